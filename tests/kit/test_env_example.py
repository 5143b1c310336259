"""`.env.example` documents every setting, and the file itself loads as valid settings."""

from __future__ import annotations

from pathlib import Path

from memory_layer.config import Settings

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
