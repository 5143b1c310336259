"""`memory-layer serve | worker | migrate | reembed | keys ... | channels ... | retention run | export |
import | mcp`."""

from __future__ import annotations

import sys

import click
import typer

from memory_layer.cli import channels, keys, mcp, reembed, retention, server, transfer
from memory_layer.config import ConfigurationError
from memory_layer.kit.db.migrations import SchemaMismatchError

app = typer.Typer(
    name="memory-layer",
    help=__doc__,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command(help="run the HTTP service")(server.serve)
app.command(help="run the embedding worker on its own (set MEMORY_WORKER_ENABLED=false on serve)")(
    server.worker
)
app.command(help="apply database migrations up to head")(server.migrate)
app.command(help="embed again every message whose vector came from another model")(reembed.reembed)
app.command("export", help="write a tenant's messages to an NDJSON file (- for stdout)")(
    transfer.export_command
)
app.command("import", help="import an NDJSON export into a tenant (- for stdin)")(
    transfer.import_command
)
app.command("mcp", help="serve the MCP tools over stdio (for desktop clients; see docs/mcp.md)")(
    mcp.mcp
)
keys.app.command(
    "rotate-encryption",
    help="re-encrypt encrypted channels' messages with the newest MEMORY_ENCRYPTION_KEYS key "
    "(resumable)",
)(channels.rotate_encryption)
app.add_typer(keys.app, name="keys", help="manage tenant-bound API keys")
app.add_typer(
    channels.app, name="channels", help="a tenant's channels as YAML: apply, export, schema"
)
app.add_typer(retention.app, name="retention", help="retention without the HTTP API")


def main(argv: list[str] | None = None) -> int:
    """The console script: settings and schema problems exit 2 with one clear line."""
    try:
        result = app(args=argv, prog_name="memory-layer", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        return 1
    except (ConfigurationError, SchemaMismatchError) as exc:
        print(f"memory-layer: {exc}", file=sys.stderr)
        return 2
    return int(result or 0)


