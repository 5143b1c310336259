"""The layout rules of docs/architecture.md that import-linter cannot see."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from memory_layer.app import create_app
from memory_layer.auth.deps import RequireScope
from memory_layer.config import Settings
from memory_layer.models.api_key import KeyScope

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "memory_layer"
# The names that build SQL; outside repositories (and the database plumbing and models) no module
# may import them.
SQL_BUILDERS = {"text", "select", "insert", "update", "delete", "func", "and_", "or_", "exists"}
SQL_ALLOWED = ("kit/db/", "models/")


def python_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def sql_imports(path: Path) -> list[str]:
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
            found += [alias.name for alias in node.names if alias.name in SQL_BUILDERS]
    return found


def test_sql_lives_in_repositories_only() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): names
        for path in python_files()
        if path.name != "repository.py"
        and not str(path.relative_to(PACKAGE)).startswith(SQL_ALLOWED)
        and (names := sql_imports(path))
    }
    assert offenders == {}


def test_the_sql_check_sees_a_query_builder(tmp_path: Path) -> None:
    module = tmp_path / "service.py"
    module.write_text("from sqlalchemy import select, text\nfrom sqlalchemy.orm import Mapped\n")
    assert sql_imports(module) == ["select", "text"]


def test_no_layer_folders_at_the_top() -> None:
    assert not {"services", "repositories", "schemas", "api", "worker"} & {
        path.name for path in PACKAGE.iterdir() if path.is_dir()
    }


def test_every_domain_with_routes_has_its_four_files() -> None:
    for endpoints in PACKAGE.glob("*/endpoints.py"):
        domain = endpoints.parent
        missing = {"service.py", "schemas.py"} - {path.name for path in domain.iterdir()}
        assert not missing, (domain.name, missing)


@pytest.fixture(scope="module")
def routes() -> list[APIRoute]:
    app = create_app(Settings(_env_file=None, embedding_provider="fake"))
    return [route for route in app.routes if isinstance(route, APIRoute) and route.include_in_schema]


def test_operation_ids_are_readable_and_unique(routes: list[APIRoute]) -> None:
    app = create_app(Settings(_env_file=None, embedding_provider="fake"))
    operation_ids = [
        operation["operationId"]
        for path in app.openapi()["paths"].values()
        for operation in path.values()
    ]
    assert len(operation_ids) == len(set(operation_ids))
    assert operation_ids
    for operation_id in operation_ids:
        assert "_v1_" not in operation_id
        assert not operation_id.endswith(("_get", "_post", "_patch", "_delete"))


def test_every_route_explains_itself(routes: list[APIRoute]) -> None:
    assert all(route.endpoint.__doc__ for route in routes), [
        route.name for route in routes if not route.endpoint.__doc__
    ]


def test_import_contracts_cover_every_domain_folder() -> None:
    """pyproject.toml's contracts are what scripts/import_contracts.py makes of today's folders."""
    result = subprocess.run(
        [sys.executable, str(PACKAGE.parents[1] / "scripts" / "import_contracts.py"), "--check"],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr


# Probes and the scrape answer without a key (orchestrators and Prometheus have none).
OPEN_ROUTES = {"/v1/admin/health", "/v1/admin/readiness", "/metrics"}


def declared_scopes(dependant: Dependant) -> set[KeyScope]:
    found: set[KeyScope] = set()
    for dependency in dependant.dependencies:
        if isinstance(dependency.call, RequireScope):
            found.add(dependency.call.scope)
        found |= declared_scopes(dependency)
    return found


def test_every_route_declares_its_scope(routes: list[APIRoute]) -> None:
    """Reads need read, writes need write, /v1/admin/* needs admin: each route says which."""
    scopes = {
        (route.path, method): declared_scopes(route.dependant)
        for route in routes
        if route.path not in OPEN_ROUTES
        for method in route.methods or ()
    }
    assert all(len(found) == 1 for found in scopes.values()), scopes
    for (path, method), found in scopes.items():
        if path.startswith("/v1/admin/"):
            expected = KeyScope.admin
        elif method == "GET" or path.endswith("/search"):
            expected = KeyScope.read
        else:
            expected = KeyScope.write
        assert found == {expected}, (path, method, found)
