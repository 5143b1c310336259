"""SQLAlchemy declarative models: every table on one Base."""

from memory_layer.models.api_key import ApiKey, KeyScope
from memory_layer.models.audit import AuditAction, AuditEvent
from memory_layer.models.base import Base
from memory_layer.models.channel import Channel, ChannelPii, ChannelUsage
from memory_layer.models.conversation import Conversation
from memory_layer.models.conversation_state import ConversationState
from memory_layer.models.erasure import Erasure
from memory_layer.models.event import ConversationEvent, EventStream
from memory_layer.models.lock import Lock
from memory_layer.models.message import EmbeddingStatus, Kind, Message, Role
from memory_layer.models.policy import ConversationUsage, TenantPolicy, TenantUsage
from memory_layer.models.run import Run, RunStatus, RunTaskOutput

__all__ = [
    "ApiKey",
    "AuditAction",
    "AuditEvent",
    "Base",
    "Channel",
    "ChannelPii",
    "ChannelUsage",
    "Conversation",
    "ConversationEvent",
    "ConversationState",
    "ConversationUsage",
    "EmbeddingStatus",
    "Erasure",
    "EventStream",
    "KeyScope",
    "Kind",
    "Lock",
    "Message",
    "Role",
    "Run",
    "RunStatus",
    "RunTaskOutput",
    "TenantPolicy",
    "TenantUsage",
]
