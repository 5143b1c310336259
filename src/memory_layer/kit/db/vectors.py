"""pgvector plumbing: the vector bind type, the HNSW index and the column's dimension.

Vectors travel as bind parameters typed with pgvector's own SQLAlchemy type, never as strings
assembled here.
"""

from __future__ import annotations

from collections.abc import Sequence

from pgvector.sqlalchemy import Vector
from sqlalchemy import BindParameter, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from memory_layer.kit.errors import InvalidInput

HNSW_INDEX_NAME = "ix_messages_embedding_hnsw"
HNSW_INDEX_SQL = (
    f"CREATE INDEX {HNSW_INDEX_NAME} ON messages USING hnsw (embedding vector_cosine_ops) "
    "WITH (m = 16, ef_construction = 128)"
)
# The context vectors' graph (migration 0011): same model, same dimension.
CONTEXT_HNSW_INDEX_NAME = "ix_messages_context_embedding_hnsw"
CONTEXT_HNSW_INDEX_SQL = (
    f"CREATE INDEX {CONTEXT_HNSW_INDEX_NAME} ON messages "
    "USING hnsw (context_embedding vector_cosine_ops) WITH (m = 16, ef_construction = 128)"
)

# `messages` is partitioned by tenant (migration 0008): each partition has its own copy of the
# graph, which PostgreSQL names after the partition and the column.
PARTITION_HNSW_SUFFIX = "_embedding_idx"


def check_vector(
    vector: Sequence[float], dimensions: int, *, field_name: str = "embedding",
    where: str | None = None,
) -> None:
    """A client's vector (a write's `embedding`, a search's `vector`) must have the column's
    dimension and a direction (cosine needs one): else 422 `embedding_dimension_mismatch` (with
    `expected` and `received`) or `invalid_embedding`. `where` prefixes the message (a batch item)."""
    prefix = f"{where}: " if where else ""
    if len(vector) != dimensions:
        raise InvalidInput(
            {
                "message": f"{prefix}{field_name} has {len(vector)} dimensions; this service "
                f"stores {dimensions} (MEMORY_EMBEDDING_DIMENSIONS)",
                "field": field_name,
                "expected": dimensions,
                "received": len(vector),
            },
            code="embedding_dimension_mismatch",
        )
    if not any(vector):
        raise InvalidInput(
            f"{prefix}{field_name} is all zeros: it has no direction to compare by cosine",
            code="invalid_embedding",
        )


def walks_graph(explain: str) -> bool:
    """Whether an EXPLAIN of a statement on `messages` searches an HNSW graph (the index or a
    partition's copy of it)."""
    return HNSW_INDEX_NAME in explain or PARTITION_HNSW_SUFFIX in explain


def vector_param(name: str) -> BindParameter[object]:
    """A bind parameter that takes a list of floats (or a numpy array) as a pgvector vector."""
    return bindparam(name, type_=Vector())


def vector_array_param(name: str) -> BindParameter[object]:
    """A bind parameter that takes a list of vectors as `vector[]` (for unnest)."""
    return bindparam(name, type_=ARRAY(Vector()))


async def stored_embedding_dimensions(connection: AsyncConnection) -> int | None:
    """The N of the `messages.embedding vector(N)` column, or None before the first migration."""
    result = await connection.execute(
        text(
            "SELECT a.atttypmod FROM pg_attribute a "
            "WHERE a.attrelid = to_regclass('messages') AND a.attname = 'embedding' "
            "AND NOT a.attisdropped"
        )
    )
    value = result.scalar_one_or_none()
    return int(value) if value is not None and value > 0 else None


async def retype_embedding_column(connection: AsyncConnection, dimensions: int) -> None:
    """Make both vector columns `vector(dimensions)`, clearing every vector, and rebuild their
    HNSW indexes.

    The caller's transaction also queues every message for a new vector (the embeddings domain
    owns that statement); texts are untouched.
    """
    await connection.execute(text(f"DROP INDEX IF EXISTS {HNSW_INDEX_NAME}"))
    await connection.execute(text(f"DROP INDEX IF EXISTS {CONTEXT_HNSW_INDEX_NAME}"))
    for column in ("embedding", "context_embedding"):
        await connection.execute(
            text(
                f"ALTER TABLE messages ALTER COLUMN {column} TYPE vector({int(dimensions)}) "
                "USING NULL"
            )
        )
    await connection.execute(text(HNSW_INDEX_SQL))
    await connection.execute(text(CONTEXT_HNSW_INDEX_SQL))
