"""SQLAlchemy declarative models: every table on one Base."""

from memory_layer.models.api_key import ApiKey, KeyScope
from memory_layer.models.audit import AuditAction, AuditEvent
from memory_layer.models.base import Base
from memory_layer.models.conversation import Conversation
from memory_layer.models.conversation_state import ConversationState
from memory_layer.models.erasure import Erasure
from memory_layer.models.message import EmbeddingStatus, Kind, Message, Role
from memory_layer.models.policy import ConversationUsage, TenantPolicy, TenantUsage

__all__ = [
    "ApiKey",
    "AuditAction",
    "AuditEvent",
    "Base",
    "Conversation",
    "ConversationState",
    "ConversationUsage",
    "EmbeddingStatus",
    "Erasure",
    "KeyScope",
    "Kind",
    "Message",
    "Role",
    "TenantPolicy",
    "TenantUsage",
]
