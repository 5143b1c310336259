"""Statements of the docs that the code can check: they stay true when the code moves on."""

from __future__ import annotations

import re
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory

from memory_layer.app import create_app
from memory_layer.config import Settings

ROOT = Path(__file__).resolve().parents[1]
API = (ROOT / "docs" / "api.md").read_text()


def test_the_readiness_example_names_the_migration_head() -> None:
    head = ScriptDirectory.from_config(Config(str(ROOT / "alembic.ini"))).get_current_head()
    example = re.search(r'"migrations": \{"ok": true, "detail": \{"current": "(\w+)", "head": "(\w+)"\}', API)
    assert example is not None
    assert example.groups() == (head, head)


def test_the_pagination_section_names_every_listing() -> None:
    document = create_app(Settings(_env_file=None)).openapi()
    listings = set()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            schema = operation["responses"].get("200", {}).get("content", {}).get(
                "application/json", {}).get("schema", {})
            name = schema.get("$ref", "").rsplit("/", 1)[-1]
            if "next_cursor" in document["components"]["schemas"].get(name, {}).get("properties", {}):
                listings.add(f"`{method.upper()} {path}`")
    section = API.split("## Pagination\n", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`GET [^`]+`", section.split("return one page at a time", 1)[0]))
    assert listings
    assert named == listings


def test_merge_patches_are_rfc_7396() -> None:
    texts = [*(ROOT / "docs").glob("*.md"), ROOT / "README.md", *(ROOT / "src").rglob("*.py")]
    assert [str(path) for path in texts if "RFC 7386" in path.read_text()] == []


def test_rate_limits_are_not_said_to_be_missing() -> None:
    missing = API.split("## Not available yet", 1)[1]
    assert "rate limit" not in missing.lower()
