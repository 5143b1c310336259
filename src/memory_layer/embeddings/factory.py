"""Build the configured provider (called from the lifespan and the CLI)."""

from __future__ import annotations

import asyncio

from memory_layer.config import ConfigurationError, EmbeddingProviderName, Settings
from memory_layer.embeddings.base import EmbeddingProvider
from memory_layer.embeddings.cache import QueryCachingProvider
from memory_layer.embeddings.fake import FakeEmbeddingProvider


async def build_provider(settings: Settings) -> EmbeddingProvider:
    """Create the provider named by MEMORY_EMBEDDING_PROVIDER and check its dimension."""
    provider: EmbeddingProvider
    if settings.embedding_provider is EmbeddingProviderName.fake:
        provider = FakeEmbeddingProvider(settings.embedding_dimensions)
    elif settings.embedding_provider is EmbeddingProviderName.local:
        from memory_layer.embeddings.local import LocalEmbeddingProvider

        provider = await asyncio.to_thread(
            LocalEmbeddingProvider.load,
            settings.local_model_path,
            batch_size=settings.embedding_batch_size,
        )
    else:
        raise ConfigurationError(
            f"embedding provider {settings.embedding_provider.value!r} is not available in this "
            "version; use 'local' or 'fake'."
        )
    if provider.dimensions != settings.embedding_dimensions:
        await provider.close()
        raise ConfigurationError(
            f"the {provider.model_name} model produces {provider.dimensions}-dimensional vectors "
            f"but MEMORY_EMBEDDING_DIMENSIONS={settings.embedding_dimensions}; set them equal."
        )
    if settings.query_cache_size > 0:
        return QueryCachingProvider(provider, settings.query_cache_size)
    return provider
