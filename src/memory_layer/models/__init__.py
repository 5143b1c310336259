"""SQLAlchemy declarative models."""

from memory_layer.models.api_key import ApiKey
from memory_layer.models.base import Base
from memory_layer.models.message import EmbeddingStatus, Message, Role

__all__ = ["ApiKey", "Base", "EmbeddingStatus", "Message", "Role"]
