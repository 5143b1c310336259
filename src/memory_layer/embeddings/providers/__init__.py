"""Embedding providers behind one protocol, and `build_provider` for the configured one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from memory_layer.config import ConfigurationError, EmbeddingProviderName, Settings
from memory_layer.embeddings.providers.base import EmbeddingProvider
from memory_layer.embeddings.providers.batching import BatchingProvider
from memory_layer.embeddings.providers.cache import QueryCachingProvider
from memory_layer.embeddings.providers.fake import FakeEmbeddingProvider
from memory_layer.kit.cache import QueryVectorCache

# In-process models, whose calls queue on one thread: concurrent calls share one model call
# (batching.py). A remote API is called as requests come.
BATCHED_PROVIDERS = frozenset({EmbeddingProviderName.local, EmbeddingProviderName.fake})


async def build_provider(
    settings: Settings,
    shared_queries: QueryVectorCache | None = None,
    *,
    callers: Callable[[], int] | None = None,
) -> EmbeddingProvider:
    """Create the provider named by MEMORY_EMBEDDING_PROVIDER and check its dimension; concurrent
    calls of an in-process model batched (MEMORY_EMBED_BATCH_*; `callers`: how many requests the
    process is serving, so a batch waits for no one who cannot come); query vectors cached in the
    process (MEMORY_QUERY_CACHE_SIZE) and in `shared_queries`."""
    provider: EmbeddingProvider
    if settings.embedding_provider is EmbeddingProviderName.fake:
        provider = FakeEmbeddingProvider(
            settings.embedding_dimensions, delay_seconds=settings.fake_embedding_delay_ms / 1000
        )
    elif settings.embedding_provider is EmbeddingProviderName.local:
        from memory_layer.embeddings.providers.local import LocalEmbeddingProvider

        provider = await asyncio.to_thread(
            LocalEmbeddingProvider.load,
            settings.local_model_path,
            batch_size=settings.embedding_batch_size,
            backend=settings.local_backend,
            threads=settings.local_model_threads,
            nice=settings.local_model_nice,
            cache_dir=settings.data_dir / "models",
        )
    elif settings.embedding_provider is EmbeddingProviderName.google_gemini:
        provider = _gemini_provider(settings)
    else:
        raise ConfigurationError(
            f"unknown embedding provider {settings.embedding_provider.value!r}; "
            "use 'local', 'google_gemini' or 'fake'."
        )
    if settings.embed_batch_max > 1 and settings.embedding_provider in BATCHED_PROVIDERS:
        provider = BatchingProvider(
            provider,
            wait_seconds=settings.embed_batch_wait_ms / 1000,
            max_texts=settings.embed_batch_max,
            # The local model's query vector is its document vector; the fake one's queries skip
            # its simulated latency, as they did before batching.
            queries_are_documents=settings.embedding_provider is EmbeddingProviderName.local,
            callers=callers,
        )
    if provider.dimensions != settings.embedding_dimensions:
        await provider.close()
        raise ConfigurationError(
            f"the {provider.model_name} model produces {provider.dimensions}-dimensional vectors "
            f"but MEMORY_EMBEDDING_DIMENSIONS={settings.embedding_dimensions}; set them equal."
        )
    if settings.query_cache_size > 0 or shared_queries is not None:
        return QueryCachingProvider(provider, settings.query_cache_size, shared_queries)
    return provider


def _gemini_provider(settings: Settings) -> EmbeddingProvider:
    if settings.gemini_api_key is None or not settings.gemini_api_key.get_secret_value().strip():
        raise ConfigurationError(
            "MEMORY_EMBEDDING_PROVIDER=google_gemini requires MEMORY_GEMINI_API_KEY."
        )
    try:
        # The SDK is an optional extra: only this provider needs it.
        from memory_layer.embeddings.providers.gemini import GeminiEmbeddingProvider
    except ImportError as exc:
        raise ConfigurationError(
            "MEMORY_EMBEDDING_PROVIDER=google_gemini needs the google-genai package: "
            "pip install 'memory-layer[gemini]'."
        ) from exc
    return GeminiEmbeddingProvider.from_settings(settings)
