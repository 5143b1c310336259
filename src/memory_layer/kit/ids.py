"""Ids of stored memories: UUIDv7, time-ordered.

Listings, history, answer expansion and search neighbours order turns by (created_at, id). Clients
importing a conversation often give every turn of a session the session's time; with random ids
those turns would come back in an arbitrary order, and "the turn after a question" would be any
turn of its session. Time-ordered ids (monotonic within the process) keep such ties in the order
the turns were written.
"""

from __future__ import annotations

import uuid

from uuid_utils.compat import uuid7


def new_id() -> uuid.UUID:
    """A new, time-ordered message id."""
    return uuid7()
