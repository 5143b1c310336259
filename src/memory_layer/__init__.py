"""memory-layer: semantic conversation memory for chatbots and AI agents."""

__version__ = "0.1.0"
