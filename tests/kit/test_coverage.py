"""`make coverage`: the suite's command with pytest-cov, an HTML report, no floor."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def coverage_recipe() -> list[str]:
    """The commands of the Makefile's `coverage` target, as `make -n` prints them."""
    result = subprocess.run(
        ["make", "-n", "-W", "pyproject.toml", "coverage", "STAMP=/dev/null"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )
    return [line for line in result.stdout.splitlines() if "run_tests.py" in line]


def test_make_coverage_runs_the_suite_with_an_html_report_and_no_floor() -> None:
    [command] = coverage_recipe()
    assert "scripts/run_tests.py" in command
    assert "--cov" in command.split()
    assert "--cov-report=html" in command.split()
    assert "fail-under" not in command
    assert "fail_under" not in (ROOT / "pyproject.toml").read_text()
    assert "fail-under" not in (ROOT / ".ci" / "run").read_text()


def test_a_measured_run_writes_the_html_report_of_the_package(tmp_path: Path) -> None:
    """The project's coverage settings on a small run: an HTML page per module of the package."""
    report = tmp_path / "htmlcov"
    env = {**os.environ, "COVERAGE_FILE": str(tmp_path / ".coverage")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--cov",
         f"--cov-report=html:{report}", "--basetemp", str(tmp_path / "basetemp"),
         "tests/test_docs.py::test_merge_patches_are_rfc_7396"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    index = (report / "index.html").read_text()
    assert "Coverage report" in index
    # One page per module of the package, config.py (imported by every run) among them.
    pages = {page.name for page in report.glob("*_py.html")}
    assert any(page.endswith("_config_py.html") for page in pages)
    assert any(page.endswith("_app_py.html") for page in pages)
