"""Embedding providers behind one protocol: local model, fake (tests) and, later, Gemini."""

from memory_layer.embeddings.base import EmbeddingError, EmbeddingProvider
from memory_layer.embeddings.factory import build_provider

__all__ = ["EmbeddingError", "EmbeddingProvider", "build_provider"]
