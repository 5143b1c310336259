"""Settings parsing and the production start-up refusals."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from memory_layer.config import ConfigurationError, Settings, check_startup_settings


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


def test_key_lists_accept_comma_separated_and_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMORY_API_KEYS", "alpha, beta,,gamma")
    monkeypatch.setenv("MEMORY_ALLOWED_ORIGINS", '["https://a.example", "https://b.example"]')
    parsed = Settings(_env_file=None)
    assert [k.get_secret_value() for k in parsed.api_keys] == ["alpha", "beta", "gamma"]
    assert parsed.allowed_origins == ["https://a.example", "https://b.example"]
    assert "alpha" not in repr(parsed)  # secrets never show up in logs


def test_documented_variable_names_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMORY_EMBEDDING_DIMENSIONS", "768")
    monkeypatch.setenv("MEMORY_RETENTION_TENANTS", "a,b")
    monkeypatch.setenv("MEMORY_READINESS_EMBED_TIMEOUT_SECONDS", "2.5")
    monkeypatch.setenv("MEMORY_HEALTH_EMBED_CHECK_ENABLED", "true")
    monkeypatch.setenv("MEMORY_ASYNC_EMBEDDINGS", "false")
    monkeypatch.setenv("MEMORY_GLOBAL_RATE_LIMIT", "600/minute")
    parsed = Settings(_env_file=None)
    assert parsed.embedding_dimensions == 768
    assert parsed.retention_tenants == ["a", "b"]
    assert parsed.readiness_embed_timeout_seconds == 2.5
    assert parsed.health_embed_check_enabled is True
    assert parsed.global_rate_limit == "600/minute"


def test_production_refuses_to_start_without_api_keys() -> None:
    with pytest.raises(ConfigurationError, match="MEMORY_API_KEYS"):
        check_startup_settings(settings(environment="production", redis_url="redis://x"))


def test_production_refuses_to_start_without_redis_when_required() -> None:
    with pytest.raises(ConfigurationError, match="MEMORY_REDIS_URL"):
        check_startup_settings(settings(environment="production", api_keys="k"))


def test_production_may_run_without_redis_when_not_required() -> None:
    warnings = check_startup_settings(
        settings(environment="production", api_keys="k", require_redis_in_production=False)
    )
    assert warnings == []


def test_development_without_keys_starts_open_with_a_warning() -> None:
    warnings = check_startup_settings(settings())
    assert len(warnings) == 1
    assert "open" in warnings[0]


def test_rate_limits_default_by_environment_read_slowapi_syntax_and_turn_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    development = settings(api_keys="k")
    assert (development.global_rate_limit, development.tenant_rate_limit) == ("", "")
    monkeypatch.setenv("MEMORY_ENVIRONMENT", "production")
    production = settings(api_keys="k", redis_url="redis://r:6379/0")
    assert (production.global_rate_limit, production.tenant_rate_limit) == (
        "12000/minute", "3000/minute"
    )
    monkeypatch.setenv("MEMORY_TENANT_RATE_LIMIT", "off")
    assert settings(api_keys="k", redis_url="redis://r:6379/0").tenant_rate_limit == ""
    monkeypatch.delenv("MEMORY_ENVIRONMENT")
    monkeypatch.delenv("MEMORY_TENANT_RATE_LIMIT")
    assert check_startup_settings(settings(api_keys="k", tenant_rate_limit="60/minute")) == []
    assert settings(tenant_rate_limit="10/second;600/minute").tenant_rate_limit == (
        "10/second;600/minute"
    )
    monkeypatch.setenv("MEMORY_GLOBAL_RATE_LIMIT", "off")
    assert Settings(_env_file=None).global_rate_limit == ""
    with pytest.raises(ValidationError, match="tenant_rate_limit"):
        settings(tenant_rate_limit="lots per minute")


def test_async_embeddings_without_any_worker_is_announced() -> None:
    assert check_startup_settings(settings(api_keys="k", async_embeddings=True)) == []
    warnings = check_startup_settings(
        settings(api_keys="k", async_embeddings=True, worker_enabled=False)
    )
    assert len(warnings) == 1
    assert "memory-layer worker" in warnings[0]


def test_kind_half_lives_read_pairs_or_json(monkeypatch: pytest.MonkeyPatch) -> None:
    from memory_layer.models.message import Kind

    defaults = settings().kind_half_life_hours
    assert defaults == {Kind.fact: 4320, Kind.preference: 4320, Kind.procedure: 8760,
                        Kind.summary: 720, Kind.event: 720}
    assert Kind.message not in defaults  # chit-chat follows MEMORY_RECENCY_HALF_LIFE_HOURS
    monkeypatch.setenv("MEMORY_KIND_HALF_LIFE_HOURS", " fact=10, summary = 2.5 ,")
    assert Settings(_env_file=None).kind_half_life_hours == {Kind.fact: 10, Kind.summary: 2.5}
    monkeypatch.setenv("MEMORY_KIND_HALF_LIFE_HOURS", '{"event": 3}')
    assert Settings(_env_file=None).kind_half_life_hours == {Kind.event: 3}
    for bad in ("rumour=3", "fact", "fact=0", "fact=-1", "fact=soon"):
        monkeypatch.setenv("MEMORY_KIND_HALF_LIFE_HOURS", bad)
        with pytest.raises(ValueError, match="kind_half_life_hours"):
            Settings(_env_file=None)


def test_the_batch_body_limit_follows_the_per_message_limits() -> None:
    derived = settings(max_batch_messages=10, max_content_chars=100, max_metadata_bytes=50)
    assert derived.max_batch_body_bytes == 10 * (400 + 100 + 1024) + 65_536
    assert settings().max_batch_body_bytes > settings().max_body_bytes


@pytest.mark.parametrize(
    ("given", "provider"),
    [("sentence_transformer", "local"), ("mock", "fake"), ("Mock", "fake"), ("local", "local"),
     ("fake", "fake"), ("google_gemini", "google_gemini")],
)
def test_the_earlier_readme_provider_names_are_aliases(
    monkeypatch: pytest.MonkeyPatch, given: str, provider: str
) -> None:
    monkeypatch.setenv("MEMORY_EMBEDDING_PROVIDER", given)
    monkeypatch.setenv("MEMORY_GEMINI_API_KEY", "x")
    assert Settings(_env_file=None).embedding_provider.value == provider


def test_an_unknown_provider_name_is_still_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMORY_EMBEDDING_PROVIDER", "sentence_transformers_v9")
    with pytest.raises(ValueError, match="embedding_provider"):
        Settings(_env_file=None)


def test_log_format_is_json_or_console(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings().log_format.value == "console"
    monkeypatch.setenv("MEMORY_LOG_FORMAT", "json")
    assert Settings(_env_file=None).log_format.value == "json"
    monkeypatch.setenv("MEMORY_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="log_format"):
        Settings(_env_file=None)


def test_the_embedded_server_has_its_own_pool_size_and_shared_buffers() -> None:
    embedded = Settings(_env_file=None, embedded_db_pool_size=5, db_pool_size=30)
    assert embedded.pool_size == 5
    external = Settings(
        _env_file=None, database_url="postgresql://x@db/y", embedded_db_pool_size=5, db_pool_size=30
    )
    assert external.pool_size == 30
    assert Settings(_env_file=None).pool_size == 6
    assert Settings(_env_file=None).embedded_shared_buffers == "32MB"
    for bad in ("32", "32 MB", "0MB", "32MB'; DROP TABLE messages; --"):
        with pytest.raises(ValidationError):
            Settings(_env_file=None, embedded_shared_buffers=bad)


def test_the_embedded_server_analyzes_new_rows_within_seconds() -> None:
    from memory_layer.kit.db.database import embedded_parameters

    parameters = embedded_parameters(Settings(_env_file=None, embedded_shared_buffers="48MB"))
    assert parameters == {"shared_buffers": "48MB", "autovacuum_naptime": "10s"}
