"""docker-compose.yml and Dockerfile, checked by reading them (no Docker engine needed)."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from memory_layer.cli import app as cli_app

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def console_scripts() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return set(project["scripts"])


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def parse_cli(args: list[str]) -> int:
    """Parse a command line as the console script would, without running it (`--help` stops
    after parsing): 0 when valid, click's usage-error status 2 otherwise."""
    return CliRunner().invoke(cli_app, [*args, "--help"]).exit_code


def test_cli_parser_refuses_unknown_commands_and_options() -> None:
    assert parse_cli(["serve", "--host", "0.0.0.0", "--port", "8000"]) == 0
    assert parse_cli(["keys", "create", "--tenant", "t"]) == 0
    assert parse_cli(["serve", "--no-such-option"]) == 2
    assert parse_cli(["no-such-command"]) == 2


def test_every_built_service_runs_a_real_memory_layer_command() -> None:
    services = compose()["services"]
    built = {name: spec for name, spec in services.items() if "build" in spec}
    assert set(built) == {"migrate", "api"}
    for name, spec in built.items():
        command = spec["command"]
        assert command[0] in console_scripts(), name
        assert parse_cli(command[1:]) == 0, name
        assert (ROOT / spec["build"] / "Dockerfile").is_file()


def test_image_services_are_pinned_and_health_checked() -> None:
    services = compose()["services"]
    for name in ("db", "redis"):
        spec = services[name]
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", spec["image"]), spec["image"]
        assert spec["image"].split(":")[1] != "latest"
        assert spec["healthcheck"]["test"][0] == "CMD"
    assert "pgvector" in services["db"]["image"]
    assert services["redis"]["command"][0] == "redis-server"


def test_api_waits_for_migrations_and_redis_and_gets_production_settings() -> None:
    services = compose()["services"]
    api = services["api"]
    assert api["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert api["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"
    env = api["environment"]
    assert env["MEMORY_ENVIRONMENT"] == "production"
    assert env["MEMORY_DATABASE_URL"].startswith("postgresql://memory:")
    assert "@db:5432/" in env["MEMORY_DATABASE_URL"]
    assert env["MEMORY_REDIS_URL"] == "redis://redis:6379/0"
    for required in ("MEMORY_API_KEYS", "MEMORY_ADMIN_API_KEYS"):
        assert ":?" in env[required], "compose must refuse to start without keys"
    assert "8000:8000" in api["ports"]


def test_dockerfile_copies_only_what_exists_and_installs_cpu_torch_first() -> None:
    instructions = dockerfile_instructions()
    for keyword, rest in instructions:
        if keyword == "COPY":
            *sources, _ = shlex.split(rest)
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: no such path"
    runs = [rest for keyword, rest in instructions if keyword == "RUN"]
    torch_step = next(i for i, run in enumerate(runs) if "torch==" in run)
    project_step = next(i for i, run in enumerate(runs) if 'pip install ".' in run)
    assert torch_step < project_step
    assert "--index-url" in runs[torch_step]
    cmd = next(rest for keyword, rest in instructions if keyword == "CMD")
    assert cmd == '["memory-layer", "serve"]'
    args = dict(rest.split("=", 1) for keyword, rest in instructions if keyword == "ARG")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert f"torch=={args['TORCH_VERSION']}" in project["dependencies"]


@pytest.mark.parametrize("path", ["alembic.ini", "alembic/env.py", ".env.example", "README.md"])
def test_files_the_image_and_docs_rely_on_exist(path: str) -> None:
    assert (ROOT / path).is_file()
