"""`memory-layer export | import` as users run them: real subprocesses on the test database."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.tenants import new_tenant
from tests.support.cli import CLI, ROOT, base_env
from tests.transfer.seed import MODEL, seed_varied


def run(*args: str, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120,
        check=False, input=stdin,
    )


async def cli(*args: str, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(run, *args, env=env, stdin=stdin)


def parse(ndjson: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in ndjson.splitlines()]


async def statuses(engine: AsyncEngine, tenant: str) -> dict[str, int]:
    async with engine.connect() as connection:
        result = await connection.execute(
            text("SELECT embedding_status, count(*) FROM messages WHERE tenant_id = :t "
                 "GROUP BY embedding_status"),
            {"t": tenant},
        )
        return {row[0]: int(row[1]) for row in result}


async def test_export_to_a_file_and_import_it_twice(
    database_url: str, db_engine: AsyncEngine, tmp_path: Path
) -> None:
    source, target = new_tenant(), new_tenant()
    ids = await seed_varied(db_engine, source)
    env = base_env(MEMORY_DATABASE_URL=database_url, MEMORY_EMBEDDING_PROVIDER="fake",
                   MEMORY_IMPORT_CHUNK_LINES="3")
    file = tmp_path / "export.ndjson"

    exported = await cli("export", "--tenant", source, str(file), env=env)
    assert exported.returncode == 0, exported.stderr
    lines = parse(file.read_text())
    assert [line["message_id"] for line in lines] == [str(i) for i in ids]
    assert exported.stdout == ""
    # Not a terminal: no progress bar, only the summary line.
    assert exported.stderr.strip().splitlines()[-1].startswith(f"exported 7 messages of tenant '{source}'")
    assert "\r" not in exported.stderr

    first = await cli("import", "--tenant", target, str(file), env=env)
    assert first.returncode == 0, first.stderr
    assert "7 lines read, 7 stored, 0 already present" in first.stderr
    assert "7 queued for embedding" in first.stderr
    second = await cli("import", "--tenant", target, str(file), env=env)
    assert "7 lines read, 0 stored, 7 already present" in second.stderr
    assert await statuses(db_engine, target) == {"pending": 7}

    back = await cli("export", "--tenant", target, "-", env=env)
    assert back.returncode == 0, back.stderr
    assert parse(back.stdout) == [{**line, "embedding_model": None} for line in lines]


async def test_stdout_to_stdin_with_embeddings_and_filters(
    database_url: str, db_engine: AsyncEngine
) -> None:
    source, target = new_tenant(), new_tenant()
    ids = await seed_varied(db_engine, source)
    env = base_env(MEMORY_DATABASE_URL=database_url, MEMORY_EMBEDDING_PROVIDER="fake")

    exported = await cli(
        "export", "--tenant", source, "--user", "u-1", "--include-embeddings", "-", env=env
    )
    assert exported.returncode == 0, exported.stderr
    lines = parse(exported.stdout)
    assert [line["message_id"] for line in lines] == [str(ids[0]), str(ids[4])]
    assert [line["embedding_model"] for line in lines] == [MODEL, "legacy-model-384"]
    assert all(len(line["embedding"]) == 384 for line in lines)
    only_c2 = await cli("export", "--tenant", source, "--conversation", "c-2", "-", env=env)
    assert [line["message_id"] for line in parse(only_c2.stdout)] == [str(ids[2]), str(ids[3])]

    imported = await cli("import", "--tenant", target, "-", env=env, stdin=exported.stdout)
    assert imported.returncode == 0, imported.stderr
    assert "2 stored" in imported.stderr
    assert "1 vectors reused, 1 queued for embedding" in imported.stderr
    assert await statuses(db_engine, target) == {"ready": 1, "pending": 1}


async def test_a_bad_line_exits_1_naming_it_and_what_was_committed(
    database_url: str, db_engine: AsyncEngine, tmp_path: Path
) -> None:
    source, target = new_tenant(), new_tenant()
    await seed_varied(db_engine, source)
    env = base_env(MEMORY_DATABASE_URL=database_url, MEMORY_EMBEDDING_PROVIDER="fake",
                   MEMORY_IMPORT_CHUNK_LINES="2")
    exported = await cli("export", "--tenant", source, "-", env=env)
    lines = exported.stdout.splitlines()
    lines[4] = lines[4].replace('"role":"user"', '"role":"robot"')
    assert "robot" in lines[4]
    file = tmp_path / "broken.ndjson"
    file.write_text("\n".join(lines) + "\n")

    result = await cli("import", "--tenant", target, str(file), env=env)
    assert result.returncode == 1
    assert "import stopped at line 5 (invalid_line)" in result.stderr
    assert "Lines 1-4 are committed" in result.stderr
    assert sum((await statuses(db_engine, target)).values()) == 4
