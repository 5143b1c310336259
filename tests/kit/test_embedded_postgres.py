"""The embedded PostgreSQL's server settings (kit/db/embedded.py): applied at start, restarting
the server when a setting needs it and this process started it."""

from __future__ import annotations

from pathlib import Path

import pytest

from memory_layer.kit.db.embedded import EmbeddedPostgres, start_embedded


def show(postgres: EmbeddedPostgres, name: str) -> str:
    answer: str = postgres.server.psql(f"\\t on\n\\a\nSHOW {name};\n")
    return answer.strip().splitlines()[-1]


def test_settings_apply_at_start_and_wait_when_another_process_runs_the_server(
    tmp_path_factory: pytest.TempPathFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # A short path: the server's Unix socket lives in its data directory.
    data_dir = Path(tmp_path_factory.mktemp("pgs"))
    first = start_embedded(data_dir, {"shared_buffers": "16MB", "work_mem": "3MB"})
    try:
        assert first.started_here
        # shared_buffers needs a restart, which the process that started the server made.
        assert show(first, "shared_buffers") == "16MB"
        assert show(first, "work_mem") == "3MB"
        # A second process finds the server running: a reloadable setting applies at once,
        # one that needs a restart waits for the next start, and says so.
        second = start_embedded(data_dir, {"shared_buffers": "24MB", "work_mem": "5MB"})
        assert not second.started_here
        assert show(second, "work_mem") == "5MB"
        assert show(second, "shared_buffers") == "16MB"
        assert "applies shared_buffers at its next start" in caplog.text
    finally:
        first.stop()
    again = start_embedded(data_dir, {"shared_buffers": "24MB"})
    try:
        assert show(again, "shared_buffers") == "24MB"
        assert again.configure({"shared_buffers": "24MB"}) == []
    finally:
        again.stop()
