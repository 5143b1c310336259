"""promtool (from Debian's `prometheus` package): the checks operators' tooling runs, run here.

scripts/run_tests.py finds it (or installs it) and passes its path in PROMTOOL; a run without it
fails instead of skipping, so CI never passes with the checks left out.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def promtool() -> str:
    found = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if not found:
        pytest.fail(
            "promtool not found: install Debian's `prometheus` package (apt-get install "
            "prometheus) or run scripts/run_tests.py, which installs it when it can"
        )
    return found


def run_promtool(
    *args: str, stdin: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], input=stdin, capture_output=True, text=True, cwd=cwd, timeout=60,
        check=False,
    )


def check_metrics(exposition: str) -> str:
    """promtool's complaints about an exposition ('' when it finds nothing)."""
    result = run_promtool("check", "metrics", stdin=exposition)
    complaints = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 or complaints, "promtool failed without saying why"
    return complaints
