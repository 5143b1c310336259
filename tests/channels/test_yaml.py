"""The channels YAML file: every error names the field and its line; `channels apply`,
`export` and `schema` as users run them; `keys rotate-encryption` with progress."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner, Result

from memory_layer.channels import document
from memory_layer.cli import app
from tests.fixtures.app import ENCRYPTION_KEYS
from tests.fixtures.tenants import new_tenant
from tests.support.cli import base_env, run_cli

GOOD = """\
channels:
  working:
    ttl_sec: 3600
    quota_bytes: 100000
  procedure:
    encrypt: true
    pii: require_encryption
"""


def test_a_good_file_loads() -> None:
    channels = document.load(GOOD)
    assert channels["working"].ttl_sec == 3600
    assert channels["working"].quota_bytes == 100000
    assert channels["procedure"].encrypt is True
    assert channels["procedure"].pii.value == "require_encryption"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("channels:\n  working:\n    ttl_sec: '3600'\n", "f.yaml:3: channels.working.ttl_sec:"),
        ("channels:\n  working:\n    ttl_sec: 30\n", "f.yaml:3: channels.working.ttl_sec:"),
        ("channels:\n  working:\n    encrypt: 1\n", "f.yaml:3: channels.working.encrypt:"),
        ("channels:\n  working:\n\n    colour: red\n",
         "f.yaml:4: channels.working.colour: unknown field"),
        ("channels:\n  working: {}\n  Working: {}\n", "f.yaml:3: channels.Working:"),
        ("channels:\n  audit: {}\n", "f.yaml:2: channels.audit: Value error, 'audit' is reserved"),
        ("version: 2\nchannels: {}\n", "f.yaml:1: version: unknown field"),
        ("channels:\n  working: [1\n", "f.yaml:line 3: not valid YAML"),
    ],
)
def test_errors_name_the_field_and_the_line(body: str, expected: str) -> None:
    with pytest.raises(document.DocumentError) as caught:
        document.load(body, "f.yaml")
    assert any(problem.startswith(expected) for problem in caught.value.problems), (
        caught.value.problems
    )


def test_apply_export_and_schema_from_the_command_line(database_url: str, tmp_path: Path) -> None:
    tenant = new_tenant()
    env = base_env(MEMORY_DATABASE_URL=database_url, MEMORY_EMBEDDING_PROVIDER="fake")
    file = tmp_path / "channels.yaml"
    file.write_text(GOOD)
    # The console script once, as users run it; the other commands in process (each start of
    # the script costs seconds of imports).
    applied = run_cli("channels", "apply", str(file), "--tenant", tenant, env=env)
    assert applied.returncode == 0, applied.stderr
    assert json.loads(applied.stdout) == {"applied": ["procedure", "working"], "deleted": []}
    local = {k: v for k, v in env.items() if k.startswith("MEMORY_")}
    exported = invoke(["channels", "export", "--tenant", tenant], local)
    assert exported.exit_code == 0, exported.output
    assert yaml.safe_load(exported.stdout) == yaml.safe_load(GOOD)

    file.write_text("channels:\n  working:\n    ttl_sec: 60\n")
    pruned = invoke(["channels", "apply", str(file), "--tenant", tenant, "--prune"], local)
    assert json.loads(pruned.stdout) == {"applied": ["working"], "deleted": ["procedure"]}

    file.write_text("channels:\n  working:\n    ttl_sec: 60\n    colour: red\n")
    bad = invoke(["channels", "apply", str(file), "--tenant", tenant], local)
    assert bad.exit_code == 2
    assert f"{file}:4: channels.working.colour: unknown field" in bad.stderr

    schema = invoke(["channels", "schema"], local)
    assert json.loads(schema.stdout)["title"] == "memory-layer channels"
    checked = invoke(["channels", "schema", str(file)], local)
    assert checked.exit_code == 2
    assert "colour" in checked.stderr


def test_rotate_encryption_reports_progress(database_url: str) -> None:
    env = {"MEMORY_DATABASE_URL": database_url, "MEMORY_ENCRYPTION_KEYS": ENCRYPTION_KEYS}
    rotated = invoke(["keys", "rotate-encryption", "--tenant", new_tenant()], env)
    assert rotated.exit_code == 0, rotated.output
    assert json.loads(rotated.stdout) == {"reencrypted": 0, "key_id": "new"}
    assert "0 left (key new)" in rotated.stderr
    refused = invoke(["keys", "rotate-encryption"], {**env, "MEMORY_ENCRYPTION_KEYS": ""})
    assert refused.exit_code == 2
    assert "MEMORY_ENCRYPTION_KEYS is unset" in refused.stderr


def invoke(args: list[str], env: dict[str, str]) -> Result:
    """The command line in this process, with only these MEMORY_* settings."""
    cleared: dict[str, str | None] = {k: None for k in os.environ if k.startswith("MEMORY_")}
    return CliRunner().invoke(app, args, env={**cleared, **env})
