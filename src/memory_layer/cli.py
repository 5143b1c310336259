"""`memory-layer serve | worker | migrate | reembed | keys ... | retention run`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import uuid
from collections.abc import Iterator

from memory_layer.config import ConfigurationError, Settings, check_startup_settings
from memory_layer.db.migrations import SchemaMismatchError, upgrade_to_head
from memory_layer.observability.logging import configure_logging


@contextlib.contextmanager
def _database(settings: Settings, *, migrate: bool) -> Iterator[str]:
    """The database URL for a one-off command (starting and later stopping the embedded server)."""
    if settings.database_url is not None:
        url = settings.database_url.get_secret_value()
        if migrate:
            upgrade_to_head(url, settings.embedding_dimensions)
        yield url
        return
    from memory_layer.db.embedded import start_embedded

    embedded = start_embedded(settings.data_dir)
    try:
        embedded.ensure_database()
        url = embedded.url()
        if migrate or settings.auto_migrate is not False:
            upgrade_to_head(url, settings.embedding_dimensions)
        yield url
    finally:
        embedded.stop()


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from memory_layer.main import create_app

    updates: dict[str, object] = {}
    if args.host is not None:
        updates["host"] = args.host
    if args.port is not None:
        updates["port"] = args.port
    settings = settings.model_copy(update=updates)
    check_startup_settings(settings)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=10,
    )
    return 0


def _migrate(_: argparse.Namespace, settings: Settings) -> int:
    with _database(settings, migrate=True):
        pass
    print("database schema is at head")
    return 0


async def _with_session(url: str, action: str, args: argparse.Namespace) -> object:
    from memory_layer.db.engine import create_engine, create_sessionmaker
    from memory_layer.repositories.api_keys import ApiKeyRepository
    from memory_layer.schemas.admin import RetentionRequest
    from memory_layer.services.auth import create_api_key
    from memory_layer.services.retention import run_retention

    engine = create_engine(url, pool_size=1, max_overflow=0)
    try:
        async with create_sessionmaker(engine).begin() as session:
            if action == "create":
                key, plaintext = await create_api_key(session, args.tenant, args.name)
                return {"id": str(key.id), "tenant_id": key.tenant_id, "name": key.name,
                        "api_key": plaintext}
            if action == "list":
                keys = await ApiKeyRepository(session).list(args.tenant)
                return [
                    {"id": str(k.id), "tenant_id": k.tenant_id, "name": k.name,
                     "prefix": k.key_prefix, "created_at": k.created_at.isoformat(),
                     "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None}
                    for k in keys
                ]
            if action == "revoke":
                return {"revoked": await ApiKeyRepository(session).revoke(uuid.UUID(args.id))}
            request = RetentionRequest(tenant_id=args.tenant, dry_run=args.dry_run)
            return (await run_retention(session, request, settings=args.settings)).model_dump(
                mode="json"
            )
    finally:
        await engine.dispose()


def _db_action(action: str) -> object:
    def run(args: argparse.Namespace, settings: Settings) -> int:
        args.settings = settings
        with _database(settings, migrate=False) as url:
            result = asyncio.run(_with_session(url, action, args))
        print(json.dumps(result, indent=2))
        if action == "create":
            print("Store this key now: it is shown only once.", file=sys.stderr)
        return 0

    return run


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from memory_layer.worker.standalone import run_worker

    check_startup_settings(settings)
    with _database(settings, migrate=False) as url:
        return asyncio.run(
            run_worker(url, settings, metrics_port=args.metrics_port, drain=args.drain)
        )


async def _reembed_async(url: str, settings: Settings, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from memory_layer.db.engine import create_engine, create_sessionmaker
    from memory_layer.embeddings.factory import build_provider
    from memory_layer.errors import InvalidInput
    from memory_layer.services.reembed import reembed

    engine = create_engine(url, pool_size=2, max_overflow=2)
    embedder = await build_provider(settings)
    bar = tqdm(unit="msg", desc=f"re-embedding with {embedder.model_name}", disable=args.quiet)
    try:
        report = await reembed(
            engine,
            create_sessionmaker(engine),
            embedder,
            settings,
            tenant_id=args.tenant,
            include_failed=args.include_failed,
            change_dimension=args.change_dimension,
            enqueue_only=args.enqueue_only,
            chunk_size=args.chunk_size,
            on_total=lambda total: setattr(bar, "total", total),
            on_progress=lambda done: None if bar.update(done) else None,
        )
    except InvalidInput as exc:
        print(f"memory-layer: {exc.detail}", file=sys.stderr)
        return 2
    finally:
        bar.close()
        await embedder.close()
        await engine.dispose()
    print(json.dumps(report.__dict__, indent=2))
    return 0


def _reembed(args: argparse.Namespace, settings: Settings) -> int:
    with _database(settings, migrate=False) as url:
        return asyncio.run(_reembed_async(url, settings, args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memory-layer", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", help="bind address (MEMORY_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (MEMORY_PORT, default 8000)")
    serve.set_defaults(handler=_serve)

    worker = commands.add_parser(
        "worker", help="run the embedding worker on its own (set MEMORY_WORKER_ENABLED=false on serve)"
    )
    worker.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on this port")
    worker.add_argument("--drain", action="store_true", help="exit once nothing is due")
    worker.set_defaults(handler=_worker)

    reembed = commands.add_parser(
        "reembed", help="embed again every message whose vector came from another model"
    )
    reembed.add_argument("--tenant", help="only this tenant")
    reembed.add_argument("--include-failed", action="store_true", help="also retry failed rows")
    reembed.add_argument(
        "--change-dimension",
        action="store_true",
        help="retype the vector column to MEMORY_EMBEDDING_DIMENSIONS (clears every vector)",
    )
    reembed.add_argument(
        "--enqueue-only", action="store_true", help="only queue the rows; running workers embed"
    )
    reembed.add_argument("--chunk-size", type=int, default=1000, help="rows queued per transaction")
    reembed.add_argument("--quiet", action="store_true", help="no progress bar")
    reembed.set_defaults(handler=_reembed)

    migrate = commands.add_parser("migrate", help="apply database migrations up to head")
    migrate.set_defaults(handler=_migrate)

    keys = commands.add_parser("keys", help="manage tenant-bound API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="create a key for one tenant")
    create.add_argument("--tenant", required=True)
    create.add_argument("--name", default="default")
    create.set_defaults(handler=_db_action("create"))
    listing = key_commands.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--tenant")
    listing.set_defaults(handler=_db_action("list"))
    revoke = key_commands.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("id")
    revoke.set_defaults(handler=_db_action("revoke"))

    retention = commands.add_parser("retention", help="retention without the HTTP API")
    retention_commands = retention.add_subparsers(dest="retention_command", required=True)
    run = retention_commands.add_parser("run", help="archive or delete per MEMORY_RETENTION_*")
    run.add_argument("--tenant")
    run.add_argument("--dry-run", action="store_true")
    run.set_defaults(handler=_db_action("retention"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
        configure_logging(settings.log_level)
        return int(args.handler(args, settings))
    except (ConfigurationError, SchemaMismatchError) as exc:
        print(f"memory-layer: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
