"""MEMORY_LANGUAGE_PROVIDER picks the provider; incomplete settings refuse to start."""

from __future__ import annotations

import pytest

from memory_layer.config import ConfigurationError, Settings, check_startup_settings
from memory_layer.consolidation.providers import build_language_provider
from memory_layer.consolidation.providers.gemini import GeminiLanguageProvider
from memory_layer.consolidation.providers.openai_compatible import OpenAICompatibleProvider


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


async def test_each_provider_is_built_from_its_settings() -> None:
    assert build_language_provider(settings()).name == "extractive"
    assert not build_language_provider(settings()).uses_model
    openai = build_language_provider(settings(
        language_provider="openai_compatible", language_base_url="http://127.0.0.1:9/v1",
        language_model="llama3.1", language_api_key="k"))
    assert isinstance(openai, OpenAICompatibleProvider)
    assert openai.name == "openai_compatible:llama3.1"
    gemini = build_language_provider(settings(language_provider="gemini", gemini_api_key="g"))
    assert isinstance(gemini, GeminiLanguageProvider)
    assert gemini.name == "gemini:gemini-2.5-flash"
    for provider in (openai, gemini):
        assert provider.uses_model
        await provider.close()


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"language_provider": "openai_compatible", "language_model": "m"},
         "MEMORY_LANGUAGE_BASE_URL"),
        ({"language_provider": "openai_compatible", "language_base_url": "http://x/v1"},
         "MEMORY_LANGUAGE_MODEL"),
        ({"language_provider": "gemini"}, "MEMORY_LANGUAGE_API_KEY"),
    ],
)
def test_incomplete_settings_refuse_to_start(values: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        check_startup_settings(settings(**values))
