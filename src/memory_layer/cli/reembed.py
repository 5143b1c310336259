"""`memory-layer reembed`: embed again after a model or dimension change."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Annotated

import typer

from memory_layer.cli.common import load_settings, print_json
from memory_layer.config import Settings
from memory_layer.kit.db.database import open_database
from memory_layer.kit.errors import InvalidInput


@dataclasses.dataclass(frozen=True)
class _Options:
    tenant: str | None
    include_failed: bool
    change_dimension: bool
    enqueue_only: bool
    chunk_size: int
    quiet: bool


async def _reembed(url: str, settings: Settings, options: _Options) -> int:
    from tqdm import tqdm

    from memory_layer.embeddings.providers import build_provider
    from memory_layer.embeddings.reembed import reembed as run
    from memory_layer.kit.db.engine import create_engine, create_sessionmaker

    engine = create_engine(url, pool_size=2, max_overflow=2)
    embedder = await build_provider(settings)
    bar = tqdm(unit="msg", desc=f"re-embedding with {embedder.model_name}", disable=options.quiet)
    try:
        report = await run(
            engine,
            create_sessionmaker(engine),
            embedder,
            settings,
            tenant_id=options.tenant,
            include_failed=options.include_failed,
            change_dimension=options.change_dimension,
            enqueue_only=options.enqueue_only,
            chunk_size=options.chunk_size,
            on_total=lambda total: setattr(bar, "total", total),
            on_progress=lambda done: None if bar.update(done) else None,
        )
    except InvalidInput as exc:
        typer.echo(f"memory-layer: {exc.detail}", err=True)
        return 2
    finally:
        bar.close()
        await embedder.close()
        await engine.dispose()
    print_json(dataclasses.asdict(report))
    return 0


def reembed(
    tenant: Annotated[str | None, typer.Option(help="only this tenant")] = None,
    include_failed: Annotated[
        bool, typer.Option("--include-failed", help="also retry failed rows")
    ] = False,
    change_dimension: Annotated[
        bool,
        typer.Option(
            "--change-dimension",
            help="retype the vector column to MEMORY_EMBEDDING_DIMENSIONS (clears every vector)",
        ),
    ] = False,
    enqueue_only: Annotated[
        bool, typer.Option("--enqueue-only", help="only queue the rows; running workers embed")
    ] = False,
    chunk_size: Annotated[int, typer.Option(help="rows queued per transaction")] = 1000,
    quiet: Annotated[bool, typer.Option("--quiet", help="no progress bar")] = False,
) -> int:
    """Embed again every message whose vector came from another model; then give every turn
    without one its context vector (MEMORY_CONTEXT_VECTORS not off)."""
    settings = load_settings()
    options = _Options(tenant, include_failed, change_dimension, enqueue_only, chunk_size, quiet)
    with open_database(settings) as database:
        return asyncio.run(_reembed(database.url, settings, options))
