"""Capturing the service's log lines as an operator's log shipper sees them: one JSON object a line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from memory_layer.config import LogFormat
from memory_layer.kit.observability.logging import configure_logging


class CapturedLogs:
    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def records(self) -> list[dict[str, Any]]:
        """Every line, parsed; a line that is not one JSON object fails the test."""
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]

    def named(self, event: str) -> list[dict[str, Any]]:
        return [record for record in self.records() if record.get("event") == event]


@contextmanager
def captured_logs(log_format: LogFormat = LogFormat.json, level: str = "info") -> Iterator[CapturedLogs]:
    """Configure logging as the service does, into a buffer; put the previous set-up back after."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    access = logging.getLogger("uvicorn.access")
    saved_access_disabled = access.disabled
    stream = io.StringIO()
    configure_logging(level, log_format, stream=stream)
    try:
        yield CapturedLogs(stream)
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        access.disabled = saved_access_disabled
