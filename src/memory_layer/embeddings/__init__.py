"""Embeddings: the providers (local model, Gemini, fake), the queue and its worker, re-embedding."""
