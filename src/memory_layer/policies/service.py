"""Tenant policies: each tenant's overrides over the MEMORY_* defaults, and the quotas on its writes.

The effective policy of a tenant is read from the database by every request that needs it (one
primary-key read), never cached in a process: a PUT takes effect on the next request of every
replica. Other domains call:

    get_policy(session, tenant_id, settings)        the effective policy (EffectivePolicy)
    load_policy(sessionmaker, tenant_id, settings)  the same on a short session of its own
    RequestPolicies(sessionmaker, settings)         load_policy once per tenant for one request
    tenant_rate_limit(session, tenant_id, settings) the tenant's rate limit ("" for none)
    state_quota_bytes(session, tenant_id, settings) the conversation-state bytes quota (0: none)
    quota_guard(session, policy, ...)               around a write of messages: QuotaExceeded,
                                                    ConversationQuotaExceeded
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

from limits import parse_many
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from memory_layer.audit import service as audit
from memory_layer.config import RetentionAction, Settings
from memory_layer.kit.errors import Conflict, InvalidInput
from memory_layer.kit.tenant_config import TenantConfigCache
from memory_layer.models.audit import AuditAction
from memory_layer.models.message import Kind
from memory_layer.models.policy import AuditLevel, PiiMode, TenantPolicy
from memory_layer.policies.repository import PolicyRepository


@dataclass(frozen=True)
class KindRetention:
    """Retention of one kind of message; None takes the tenant's own value."""

    archive_after_days: float | None = None
    delete_after_days: float | None = None


@dataclass(frozen=True)
class PolicyOverrides:
    """What a tenant stores: None takes the MEMORY_* default; 0 means none (no TTL, no quota,
    never archive or delete)."""

    archive_after_days: float | None = None
    delete_after_days: float | None = None
    retention_importance_below: float | None = None
    retention_by_kind: Mapping[Kind, KindRetention] = field(default_factory=dict)
    default_ttl_seconds: int | None = None
    max_messages: int | None = None
    max_content_bytes: int | None = None
    max_state_bytes: int | None = None
    max_messages_per_conversation: int | None = None
    rate_limit: str | None = None
    pii_mode: PiiMode | None = None
    extract_facts: bool | None = None
    summarize: bool | None = None
    audit_level: AuditLevel | None = None


@dataclass(frozen=True)
class EffectivePolicy:
    """The rules a tenant's requests follow: its overrides over the defaults, every value set."""

    tenant_id: str
    archive_after_days: float  # 0: never
    delete_after_days: float  # 0: never
    retention_importance_below: float  # archiving spares messages at least this important
    retention_by_kind: Mapping[Kind, KindRetention]  # resolved: both values set for each kind
    default_ttl_seconds: int  # 0: messages do not expire unless the client says so
    max_messages: int  # 0: no quota
    max_content_bytes: int
    max_state_bytes: int
    rate_limit: str  # slowapi syntax; "": no tenant limit
    pii_mode: PiiMode
    pii_phone_region: str
    extract_facts: bool = True  # the worker distils facts from the tenant's user turns
    summarize: bool = True  # and keeps a running summary of each conversation
    max_messages_per_conversation: int = 0  # 0: no quota
    audit_level: AuditLevel = AuditLevel.admin

    def retention_of(self, kind: Kind) -> tuple[float, float]:
        """(archive after days, delete after days) for messages of this kind; 0 means never."""
        own = self.retention_by_kind.get(kind)
        if own is None:
            return self.archive_after_days, self.delete_after_days
        assert own.archive_after_days is not None
        assert own.delete_after_days is not None
        return own.archive_after_days, own.delete_after_days

    @property
    def has_quota(self) -> bool:
        return self.max_messages > 0 or self.max_content_bytes > 0


@dataclass(frozen=True)
class PolicyView:
    """A tenant's policy as the admin route shows it: effective values and stored overrides."""

    tenant_id: str
    effective: EffectivePolicy
    overrides: PolicyOverrides
    updated_at: datetime | None


def _default_retention(settings: Settings) -> tuple[float, float]:
    if settings.retention_action is RetentionAction.archive:
        return settings.retention_max_age_days, settings.retention_delete_after_days
    return 0.0, settings.retention_max_age_days


def _overrides(row: TenantPolicy | None) -> PolicyOverrides:
    if row is None:
        return PolicyOverrides()
    by_kind = {
        Kind(kind): KindRetention(**values) for kind, values in (row.retention_by_kind or {}).items()
    }
    return PolicyOverrides(
        archive_after_days=row.archive_after_days,
        delete_after_days=row.delete_after_days,
        retention_importance_below=row.retention_importance_below,
        retention_by_kind=by_kind,
        default_ttl_seconds=row.default_ttl_seconds,
        max_messages=row.max_messages,
        max_content_bytes=row.max_content_bytes,
        max_state_bytes=row.max_state_bytes,
        rate_limit=row.rate_limit,
        pii_mode=PiiMode(row.pii_mode) if row.pii_mode is not None else None,
        extract_facts=row.extract_facts,
        summarize=row.summarize,
        max_messages_per_conversation=row.max_messages_per_conversation,
        audit_level=AuditLevel(row.audit_level) if row.audit_level is not None else None,
    )


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value


def resolve(tenant_id: str, overrides: PolicyOverrides, settings: Settings) -> EffectivePolicy:
    """The overrides over the settings' defaults."""
    archive_default, delete_default = _default_retention(settings)
    archive = _pick(overrides.archive_after_days, archive_default)
    delete = _pick(overrides.delete_after_days, delete_default)
    return EffectivePolicy(
        tenant_id=tenant_id,
        archive_after_days=archive,
        delete_after_days=delete,
        retention_importance_below=_pick(
            overrides.retention_importance_below, settings.retention_importance_threshold
        ),
        retention_by_kind={
            kind: KindRetention(
                _pick(own.archive_after_days, archive), _pick(own.delete_after_days, delete)
            )
            for kind, own in overrides.retention_by_kind.items()
        },
        default_ttl_seconds=_pick(overrides.default_ttl_seconds, settings.default_ttl_seconds),
        max_messages=_pick(overrides.max_messages, settings.quota_messages),
        max_content_bytes=_pick(overrides.max_content_bytes, settings.quota_content_bytes),
        max_state_bytes=_pick(overrides.max_state_bytes, settings.quota_state_bytes),
        rate_limit=_pick(overrides.rate_limit, settings.tenant_rate_limit),
        pii_mode=_pick(overrides.pii_mode, settings.pii_mode),
        pii_phone_region=settings.pii_phone_region,
        extract_facts=_pick(overrides.extract_facts, settings.extract_facts),
        summarize=_pick(overrides.summarize, settings.summarize),
        max_messages_per_conversation=_pick(
            overrides.max_messages_per_conversation, settings.quota_messages_per_conversation
        ),
        audit_level=_pick(overrides.audit_level, settings.audit_level),
    )


async def get_policy(session: AsyncSession, tenant_id: str, settings: Settings) -> EffectivePolicy:
    """The tenant's effective policy, read from the database now (never a cached copy)."""
    row = await PolicyRepository(session).get(tenant_id)
    return resolve(tenant_id, _overrides(row), settings)


async def load_policy(
    sessionmaker: async_sessionmaker[AsyncSession],
    tenant_id: str,
    settings: Settings,
    cache: TenantConfigCache | None = None,
) -> EffectivePolicy:
    """get_policy on a short session of its own, closed before the caller goes on (so no
    connection waits while the caller embeds a text); from the process's `cache` when it holds
    it (kit/tenant_config.py)."""

    async def read() -> EffectivePolicy:
        async with sessionmaker() as session:
            return await get_policy(session, tenant_id, settings)

    if cache is None:
        return await read()
    return await cache.get("policy", tenant_id, read)


class RequestPolicies:
    """The policies one request reads: each tenant's is read once (load_policy), then shared by
    whatever else the request asks it of (the tenant rate limit, then the write it limits).
    One per request, never kept beyond it."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        cache: TenantConfigCache | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.settings = settings
        # The process's copies of policies and channel rules (None: read them every time).
        self.cache = cache
        self._read: dict[str, EffectivePolicy] = {}

    async def get(self, tenant_id: str) -> EffectivePolicy:
        policy = self._read.get(tenant_id)
        if policy is None:
            policy = await load_policy(self.sessionmaker, tenant_id, self.settings, self.cache)
            self._read[tenant_id] = policy
        return policy


async def tenant_rate_limit(session: AsyncSession, tenant_id: str, settings: Settings) -> str:
    """The tenant's rate limit in slowapi syntax: its override, else MEMORY_TENANT_RATE_LIMIT;
    "" when it has none."""
    return (await get_policy(session, tenant_id, settings)).rate_limit


async def state_quota_bytes(session: AsyncSession, tenant_id: str, settings: Settings) -> int:
    """The most bytes of conversation state the tenant may store (0: no quota)."""
    return (await get_policy(session, tenant_id, settings)).max_state_bytes


async def all_policies(session: AsyncSession, settings: Settings) -> list[EffectivePolicy]:
    """The effective policy of every tenant that stores overrides."""
    rows = await PolicyRepository(session).all()
    return [resolve(row.tenant_id, _overrides(row), settings) for row in rows]


def default_policy(settings: Settings, tenant_id: str = "") -> EffectivePolicy:
    """The policy of a tenant without overrides."""
    return resolve(tenant_id, PolicyOverrides(), settings)


def check_rate_limit(value: str) -> None:
    """A rate limit must parse as slowapi reads it (`100/minute`, `10/second;1000/hour`)."""
    if value == "":
        return
    try:
        parse_many(value)
    except ValueError:
        raise InvalidInput(
            f"rate_limit {value!r} is not a rate limit; write e.g. '100/minute' or "
            "'10/second;1000/hour'",
            code="invalid_rate_limit",
        ) from None


async def describe_policy(session: AsyncSession, tenant_id: str, settings: Settings) -> PolicyView:
    """A tenant's effective policy and its stored overrides."""
    row = await PolicyRepository(session).get(tenant_id)
    overrides = _overrides(row)
    return PolicyView(
        tenant_id=tenant_id,
        effective=resolve(tenant_id, overrides, settings),
        overrides=overrides,
        updated_at=row.updated_at if row is not None else None,
    )


async def put_policy(
    session: AsyncSession,
    tenant_id: str,
    overrides: PolicyOverrides,
    settings: Settings,
    *,
    actor: audit.Actor,
) -> PolicyView:
    """Replace a tenant's overrides (every field; None returns it to the default). It applies
    from the next request on, on every replica; audited (`policy.updated`, the fields set)."""
    if overrides.rate_limit is not None:
        check_rate_limit(overrides.rate_limit)
    values: dict[str, Any] = {
        item.name: getattr(overrides, item.name) for item in fields(PolicyOverrides)
    }
    values["retention_by_kind"] = {
        kind.value: asdict(own) for kind, own in overrides.retention_by_kind.items()
    }
    if overrides.pii_mode is not None:
        values["pii_mode"] = overrides.pii_mode.value
    if overrides.audit_level is not None:
        values["audit_level"] = overrides.audit_level.value
    row = await PolicyRepository(session).upsert(tenant_id, values)
    overridden = sum(1 for name, value in values.items() if value not in (None, {}))
    await audit.record(
        session,
        AuditAction.policy_updated,
        actor=actor,
        tenant_id=tenant_id,
        target=f"tenant:{tenant_id}",
        counts={"fields_overridden": overridden},
    )
    stored = _overrides(row)
    return PolicyView(tenant_id, resolve(tenant_id, stored, settings), stored, row.updated_at)


class QuotaExceeded(Conflict):
    """A write would take the tenant past one of its quotas; nothing was written."""

    code = "quota_exceeded"

    def __init__(self, tenant_id: str, quota: str, limit: int, current: int, requested: int) -> None:
        self.message = (
            f"tenant {tenant_id!r} would exceed its {quota} quota: {current} used + {requested} "
            f"requested > {limit}"
        )
        super().__init__(
            {
                "message": self.message,
                "quota": quota,
                "limit": limit,
                "current": current,
                "requested": requested,
            }
        )


async def lock_usage(session: AsyncSession, tenant_id: str) -> tuple[int, int]:
    """The tenant's (messages, content bytes), its usage row locked until the transaction ends."""
    return await PolicyRepository(session).lock_usage(tenant_id)


def check_usage(
    policy: EffectivePolicy, current: tuple[int, int], adding: tuple[int, int]
) -> None:
    """Raise QuotaExceeded when `adding` (messages, content bytes) takes `current` past a quota."""
    for index, (quota, limit) in enumerate(
        (("max_messages", policy.max_messages), ("max_content_bytes", policy.max_content_bytes))
    ):
        if limit > 0 and adding[index] > 0 and current[index] + adding[index] > limit:
            raise QuotaExceeded(policy.tenant_id, quota, limit, current[index], adding[index])


class ConversationQuotaExceeded(QuotaExceeded):
    """A write would take a conversation past the tenant's max_messages_per_conversation;
    nothing was written (the oldest messages are never trimmed to make room). A QuotaExceeded,
    so what stops at a tenant quota (an import's chunk) stops at this one too."""

    code = "conversation_quota_exceeded"

    def __init__(
        self, tenant_id: str, conversation_id: str, limit: int, current: int, requested: int
    ) -> None:
        self.message = (
            f"conversation {conversation_id!r} of tenant {tenant_id!r} would exceed its "
            f"max_messages_per_conversation quota: {current} stored + {requested} requested > "
            f"{limit}"
        )
        Conflict.__init__(
            self,
            {
                "message": self.message,
                "quota": "max_messages_per_conversation",
                "conversation_id": conversation_id,
                "limit": limit,
                "current": current,
                "requested": requested,
            }
        )


def check_conversations(
    policy: EffectivePolicy, current: Mapping[str, int], adding: Mapping[str, int]
) -> None:
    """Raise ConversationQuotaExceeded when `adding` (messages per conversation) takes one of
    the `current` counts past the tenant's max_messages_per_conversation."""
    limit = policy.max_messages_per_conversation
    if limit <= 0:
        return
    for conversation_id in sorted(adding):
        stored, requested = current.get(conversation_id, 0), adding[conversation_id]
        if requested > 0 and stored + requested > limit:
            raise ConversationQuotaExceeded(
                policy.tenant_id, conversation_id, limit, stored, requested
            )


@asynccontextmanager
async def quota_guard(
    session: AsyncSession,
    policy: EffectivePolicy,
    adding: tuple[int, int] | None = None,
    conversations: Mapping[str, int] | None = None,
) -> AsyncIterator[None]:
    """Around the insert of a tenant's messages, in the writing transaction.

    With a quota, the tenant's usage row is locked first (concurrent writers of the tenant wait
    for this transaction to end) and read; with a per-conversation quota, then the counter rows
    of the `conversations` written (messages per conversation), in key order: the order every
    writer of the tenant locks them in, the usage triggers included. When `adding` (messages,
    bytes) is known it is checked, with `conversations`, before the insert; otherwise the
    counts are read again after it (the insert's triggers have counted the rows really stored)
    and an excess raises QuotaExceeded or ConversationQuotaExceeded, which rolls the transaction
    back. Without a quota this costs nothing.
    """
    per_conversation = policy.max_messages_per_conversation > 0 and bool(conversations)
    if not policy.has_quota and not per_conversation:
        yield
        return
    repository = PolicyRepository(session)
    before = await repository.lock_usage(policy.tenant_id)
    keys = sorted(conversations or {}) if per_conversation else []
    counted = await repository.lock_conversations(policy.tenant_id, keys) if keys else {}
    if adding is not None:
        check_usage(policy, before, adding)
        check_conversations(policy, counted, conversations or {})
        yield
        return
    yield
    after = await repository.usage(policy.tenant_id)
    check_usage(policy, before, (after[0] - before[0], after[1] - before[1]))
    if keys:
        now = await repository.conversation_counts(policy.tenant_id, keys)
        check_conversations(
            policy, counted, {key: now.get(key, 0) - counted.get(key, 0) for key in keys}
        )
