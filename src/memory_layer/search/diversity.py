"""Maximal marginal relevance: trade some score for variety among the top hits.

At each step pick the candidate maximising
    lambda * score - (1 - lambda) * max cosine similarity to the hits already picked,
over the few dozen candidates the SQL ranked (never over a tenant's rows). With lambda = 1 it is
the score order; candidates without a vector (embedding pending) count as unlike everything.
"""

from __future__ import annotations

import numpy as np


def mmr_order(
    scores: list[float], vectors: list[list[float] | None], *, lambda_: float, k: int
) -> list[int]:
    """Indices of the chosen candidates, in the order MMR picks them."""
    n = len(scores)
    if n == 0:
        return []
    dims = next((len(v) for v in vectors if v is not None), 1)
    matrix = np.zeros((n, dims), dtype=np.float64)
    for i, vector in enumerate(vectors):
        if vector is not None:
            row = np.asarray(vector, dtype=np.float64)
            norm = np.linalg.norm(row)
            matrix[i] = row / norm if norm > 0 else row
    similarity = matrix @ matrix.T
    relevance = np.asarray(scores, dtype=np.float64)
    chosen: list[int] = []
    closest = np.full(n, -np.inf)  # max similarity to anything chosen so far
    remaining = np.ones(n, dtype=bool)
    for _ in range(min(k, n)):
        penalty = np.where(np.isfinite(closest), closest, 0.0)
        value = lambda_ * relevance - (1.0 - lambda_) * penalty
        value[~remaining] = -np.inf
        pick = int(np.argmax(value))
        chosen.append(pick)
        remaining[pick] = False
        closest = np.maximum(closest, similarity[pick])
    return chosen
