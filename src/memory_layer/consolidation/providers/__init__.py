"""Language providers behind one protocol, and `build_language_provider` for the configured one."""

from __future__ import annotations

from memory_layer.config import ConfigurationError, LanguageProviderName, Settings
from memory_layer.consolidation.providers.base import LanguageProvider


def build_language_provider(settings: Settings) -> LanguageProvider:
    """The provider named by MEMORY_LANGUAGE_PROVIDER."""
    name = settings.language_provider
    if name is LanguageProviderName.extractive:
        # Imported here: the rules it uses import this package's base module.
        from memory_layer.consolidation.providers.extractive import ExtractiveProvider

        return ExtractiveProvider()
    if name is LanguageProviderName.openai_compatible:
        from memory_layer.consolidation.providers.openai_compatible import OpenAICompatibleProvider

        return OpenAICompatibleProvider.from_settings(settings)
    if name is LanguageProviderName.gemini:
        try:
            # The SDK is an optional extra: only this provider needs it.
            from memory_layer.consolidation.providers.gemini import GeminiLanguageProvider
        except ImportError as exc:
            raise ConfigurationError(
                "MEMORY_LANGUAGE_PROVIDER=gemini needs the google-genai package: "
                "pip install 'memory-layer[gemini]'."
            ) from exc
        return GeminiLanguageProvider.from_settings(settings)
    raise ConfigurationError(  # pragma: no cover - the enum has no other member
        f"unknown language provider {name.value!r}; use 'extractive', 'gemini' or "
        "'openai_compatible'."
    )
