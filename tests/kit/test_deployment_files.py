"""docker-compose.yml, the Prometheus and Grafana files it mounts, and the Dockerfile, checked by
reading them (no Docker engine needed): every command, port, target and file they name exists."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from memory_layer.app import create_app
from memory_layer.cli import app as cli_app
from tests.fixtures.app import make_settings

ROOT = Path(__file__).resolve().parents[2]
IMAGE_PORTS = {"prometheus": 9090, "grafana": 3000, "db": 5432, "redis": 6379}


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
    assert set(built) == {"migrate", "api", "worker"}
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


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def listening_port(service: str) -> int:
    """The port a compose service listens on, read from its command (or the image's default)."""
    spec = compose()["services"][service]
    if service == "api":
        return int(option(spec["command"], "--port"))
    if service == "worker":
        return int(option(spec["command"], "--metrics-port"))
    return IMAGE_PORTS[service]


def bind_mounts(service: str) -> dict[str, Path]:
    """Container path -> host path of a service's bind mounts (named volumes left out)."""
    mounts = {}
    for volume in compose()["services"][service].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            mounts[target] = ROOT / source
    return mounts


def host_path(service: str, container_path: str) -> Path:
    """Where a file the container reads comes from in this repository."""
    for target, source in bind_mounts(service).items():
        if container_path == target or container_path.startswith(target + "/"):
            return source / container_path[len(target):].lstrip("/")
    raise AssertionError(f"{service}: {container_path} is not in a bind mount")


def test_api_and_worker_run_apart_with_the_worker_metrics_port() -> None:
    services = compose()["services"]
    assert services["api"]["environment"]["MEMORY_WORKER_ENABLED"] == "false"
    worker = services["worker"]
    assert worker["command"][:2] == ["memory-layer", "worker"]
    api_env = services["api"]["environment"]
    assert worker["environment"]["MEMORY_DATABASE_URL"] == api_env["MEMORY_DATABASE_URL"]
    assert worker["environment"]["MEMORY_HOST"] == "0.0.0.0"
    port = listening_port("worker")
    assert str(port) in worker["expose"]
    # The image's HEALTHCHECK asks the API port, which a worker does not serve: it is replaced.
    assert f"127.0.0.1:{port}/metrics" in " ".join(worker["healthcheck"]["test"])
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_published_ports_are_the_ports_the_services_listen_on() -> None:
    services = compose()["services"]
    published = {
        name: [entry.split(":") for entry in spec.get("ports", [])] for name, spec in services.items()
    }
    assert {name for name, ports in published.items() if ports} == {"api", "prometheus", "grafana"}
    for name, ports in published.items():
        for _, container in ports:
            assert int(container) == listening_port(name), name


def prometheus_config() -> dict[str, Any]:
    command = compose()["services"]["prometheus"]["command"]
    config_flag = next(arg for arg in command if arg.startswith("--config.file="))
    path = host_path("prometheus", config_flag.split("=", 1)[1])
    assert path.is_file(), path
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    data["__path__"] = path
    return data


def test_prometheus_scrapes_every_api_and_worker_port_and_loads_existing_rules() -> None:
    config = prometheus_config()
    for rule_file in config["rule_files"]:
        assert (config["__path__"].parent / rule_file).is_file(), rule_file
    targets: dict[str, tuple[str, int, str]] = {}
    for job in config["scrape_configs"]:
        for discovery in job.get("dns_sd_configs", []):
            for name in discovery["names"]:
                targets[job["job_name"]] = (name, int(discovery["port"]), job["metrics_path"])
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, port = target.split(":")
                targets[job["job_name"]] = (host, int(port), job["metrics_path"])
    services = compose()["services"]
    scraped = {host for host, _, _ in targets.values()}
    assert {"api", "worker"} <= scraped
    for host, port, path in targets.values():
        assert host in services, host
        assert port == listening_port(host), host
        assert path == "/metrics"
    # The alert rules name the jobs they watch.
    rules = (config["__path__"].parent / "alerts.yml").read_text()
    assert all(job.startswith("memory-layer-") for job in targets)
    assert 'job=~"memory-layer-.*"' in rules


def test_grafana_provisioning_points_at_prometheus_and_the_mounted_dashboard() -> None:
    mounts = bind_mounts("grafana")
    provisioning = mounts["/etc/grafana/provisioning"]
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    host, port = datasource["url"].removeprefix("http://").split(":")
    assert host in compose()["services"]
    assert int(port) == listening_port(host)
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "memory-layer.yml").read_text())[
        "providers"
    ]
    dashboards = host_path("grafana", provider["options"]["path"])
    assert (dashboards / "memory-layer.json").is_file()
    env = compose()["services"]["grafana"]["environment"]
    assert host_path("grafana", env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]).is_file()


def test_retention_scheduler_posts_to_the_real_route_with_an_admin_key() -> None:
    retention = compose()["services"]["retention"]
    script = retention["command"][-1]
    match = re.search(r"curl [^\n]*-X POST (http://([a-z]+):(\d+)(/\S+))", script)
    assert match, script
    _, host, port, path = match.groups()
    assert host == "api"
    assert int(port) == listening_port("api")
    app = create_app(make_settings("postgresql://unused@localhost/unused"))
    assert "post" in app.openapi()["paths"][path]
    assert "X-API-Key: $${MEMORY_ADMIN_API_KEYS%%,*}" in script
    assert ":?" in retention["environment"]["MEMORY_ADMIN_API_KEYS"]
    assert "sleep" in script
    assert "RETENTION_INTERVAL_SECONDS" in retention["environment"]
    assert retention["depends_on"]["api"]["condition"] == "service_healthy"


def test_every_bind_mounted_path_exists() -> None:
    for name in compose()["services"]:
        for target, source in bind_mounts(name).items():
            assert source.exists(), f"{name}: {source} (mounted at {target})"


@pytest.mark.parametrize("path", ["alembic.ini", "alembic/env.py", ".env.example", "README.md"])
def test_files_the_image_and_docs_rely_on_exist(path: str) -> None:
    assert (ROOT / path).is_file()
