"""`.env.example` and the README's configuration table document every setting, with the code's
defaults, and `.env.example` itself loads as valid settings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from memory_layer.config import PRODUCTION_RATE_LIMITS, Settings

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"


def documented_names() -> set[str]:
    names = set()
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            names.add(line.split("=", 1)[0])
    return names


def test_every_setting_is_in_env_example() -> None:
    expected = {f"MEMORY_{name.upper()}" for name in Settings.model_fields}
    assert expected - documented_names() == set()
    assert documented_names() - expected == set()


def test_env_example_copied_to_dot_env_gives_the_defaults() -> None:
    from_file = Settings(_env_file=ENV_EXAMPLE)
    defaults = Settings(_env_file=None)
    assert from_file.database_url is None  # empty values mean "unset", so the embedded default
    assert from_file.auto_migrate is None
    assert from_file.model_dump() == defaults.model_dump()


def test_operations_guide_lists_every_setting() -> None:
    guide = (ENV_EXAMPLE.parent / "docs" / "operations.md").read_text()
    missing = {
        f"MEMORY_{name.upper()}"
        for name in Settings.model_fields
        if f"`MEMORY_{name.upper()}`" not in guide
    }
    assert missing == set()


README = ENV_EXAMPLE.parent / "README.md"
# Defaults the table words rather than spells: one that depends on the platform, and the rate
# limits, which depend on MEMORY_ENVIRONMENT.
WORDED = {
    "MEMORY_DATA_DIR": "the user's data directory",
    **{
        f"MEMORY_{name.upper()}": f"off in development, {limit} in production"
        for name, limit in PRODUCTION_RATE_LIMITS.items()
    },
}


def readme_rows() -> list[tuple[list[str], list[str]]]:
    """(names, defaults) of each row of the README's configuration table."""
    section = README.read_text().split("## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("| `") or len(cells) != 3:
            continue
        names = re.findall(r"`([A-Z0-9_]+)`", cells[0])
        defaults = [part.strip() for part in cells[1].split(" / ")]
        rows.append((names, defaults))
    return rows


def test_the_readme_table_lists_every_setting_and_only_settings() -> None:
    expected = {f"MEMORY_{name.upper()}" for name in Settings.model_fields}
    listed = [name for names, _ in readme_rows() for name in names]
    assert len(listed) == len(set(listed)), "a setting listed twice"
    assert expected - set(listed) == set(), "settings missing from the README's table"
    assert set(listed) - expected == set(), "names in the README's table that are no setting"


def test_the_readme_table_gives_the_defaults_of_the_code(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = Settings(_env_file=None)
    wrong = []
    for names, cells in readme_rows():
        assert len(cells) in (1, len(names)), f"{names}: one default per name, or one for all"
        for name, cell in zip(names, cells * len(names) if len(cells) == 1 else cells, strict=False):
            field = name.removeprefix("MEMORY_").lower()
            value = getattr(defaults, field)
            if name in WORDED:
                ok = cell == WORDED[name]
            elif cell == "unset":
                ok = value is None
            elif cell == "empty":
                ok = value in ("", [])
            else:
                # The cell, read as the environment variable, is the default.
                with monkeypatch.context() as env:
                    env.setenv(name, cell)
                    ok = getattr(Settings(_env_file=None), field) == value and value is not None
            if not ok:
                wrong.append(f"{name}: README {cell!r}, code {value!r}")
    assert wrong == []
