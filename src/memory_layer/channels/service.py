"""Channels: a tenant's governed memory spaces, and the rules every write to one obeys.

A message belongs to a channel (`default` unless it names one). A tenant without registered
channels writes to any channel freely, as before channels existed. A tenant with channels writes
only to those (and to `default`, which always exists: registering it gives it rules); each write
to a registered channel obeys its TTL ceiling (`ttl_violation`), its PII rule
(`encryption_required`, `pii_rejected`), its daily byte quota per user (`quota_exceeded`), and is
stored encrypted when the channel says so (kit/crypto.py). Every refusal happens before anything
is written, or rolls the write back.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from memory_layer.audit import service as audit
from memory_layer.channels.repository import BY_NAME, ChannelRepository
from memory_layer.kit.crypto import EncryptionKeyRing, keyring_of, open_message, seal_message
from memory_layer.kit.errors import Conflict, DomainError, InvalidInput, NotFound
from memory_layer.kit.pagination import CursorCodec, Page, PageRequest, paginate
from memory_layer.kit.tenant_config import TenantConfigCache
from memory_layer.models.channel import Channel, ChannelPii
from memory_layer.models.policy import PiiMode

DEFAULT_CHANNEL = "default"
NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
NAME_MAX = 50
RESERVED = frozenset({"admin", "system", "internal", "redis", "audit"})
TTL_MIN = 60
TTL_MAX = 604_800
# A client's expires_at is compared with the ceiling with this much slack (the request's own
# time in flight), so `expires_at = now + ttl_sec` computed by the client passes.
TTL_SLACK = timedelta(seconds=5)
_NAME = re.compile(NAME_PATTERN)


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a channel, or None."""
    if len(name) > NAME_MAX:
        return f"at most {NAME_MAX} characters"
    if not _NAME.match(name):
        return "lower-case letters, digits and '_', starting with a letter"
    if name in RESERVED:
        return f"{name!r} is reserved ({', '.join(sorted(RESERVED))})"
    return None


def check_name(name: str) -> None:
    problem = name_problem(name)
    if problem is not None:
        raise InvalidInput(f"channel {name!r}: {problem}", code="invalid_channel_name")


class UnknownChannel(InvalidInput):
    code = "unknown_channel"


class TtlViolation(InvalidInput):
    code = "ttl_violation"


class EncryptionRequired(InvalidInput):
    code = "encryption_required"


class EncryptionUnavailable(Conflict):
    code = "encryption_unavailable"


class ChannelQuotaExceeded(DomainError):
    """429: the day's bytes of this user on this channel would pass the channel's quota."""

    status_code = 429
    code = "quota_exceeded"

    def __init__(
        self, channel: str, user_id: str | None, quota: int, used: int, requested: int, day: date
    ) -> None:
        start = datetime.combine(day, time(), tzinfo=UTC)
        resets = start + timedelta(days=1)
        self.message = (
            f"channel {channel!r}: user {user_id!r} has written {used} of {quota} bytes today "
            f"(UTC day {day.isoformat()}); {requested} more would pass the daily quota, which "
            f"resets at {resets.isoformat()}"
        )
        self.retry_after = max(1, int((resets - datetime.now(UTC)).total_seconds()))
        super().__init__(
            {
                "message": self.message,
                "channel": channel,
                "user_id": user_id,
                "quota": "quota_bytes",
                "window": "day",
                "window_start": start.isoformat(),
                "resets_at": resets.isoformat(),
                "limit": quota,
                "current": used,
                "requested": requested,
            }
        )


@dataclass(frozen=True)
class ChannelSettings:
    """A channel's rules, as registered."""

    ttl_sec: int | None = None
    encrypt: bool = False
    quota_bytes: int | None = None
    pii: ChannelPii = ChannelPii.allow


@dataclass(frozen=True)
class ChannelRule:
    """The rules one write follows (a registered channel)."""

    name: str
    settings: ChannelSettings


@dataclass(frozen=True)
class ChannelRules:
    """A tenant's channels as one write request reads them (on a short session of its own)."""

    tenant_id: str
    channels: dict[str, ChannelSettings] = field(default_factory=dict)

    def rule_for(self, name: str, where: str | None = None) -> ChannelRule | None:
        """The rules of a write to channel `name`: None for a tenant without channels, or for
        `default` when it was not registered; 422 `unknown_channel` for any other name the
        tenant did not register."""
        settings = self.channels.get(name)
        if settings is not None:
            return ChannelRule(name, settings)
        if not self.channels or name == DEFAULT_CHANNEL:
            return None
        prefix = f"{where}: " if where else ""
        raise UnknownChannel(
            f"{prefix}tenant {self.tenant_id!r} has no channel {name!r}; its channels: "
            f"{', '.join(sorted([DEFAULT_CHANNEL, *self.channels]))}"
        )


def _settings(channel: Channel) -> ChannelSettings:
    return ChannelSettings(
        ttl_sec=channel.ttl_sec,
        encrypt=channel.encrypt,
        quota_bytes=channel.quota_bytes,
        pii=ChannelPii(channel.pii),
    )


async def load_rules(
    sessionmaker: async_sessionmaker[AsyncSession],
    tenant_id: str,
    cache: TenantConfigCache | None = None,
) -> ChannelRules:
    """The tenant's channels, read on a short session of its own (a write reads them before it
    embeds, and holds no connection while the model runs); from the process's `cache` when it
    holds them (kit/tenant_config.py)."""

    async def read() -> ChannelRules:
        async with sessionmaker() as session:
            channels = await ChannelRepository(session).all(tenant_id)
        return ChannelRules(tenant_id, {c.name: _settings(c) for c in channels})

    if cache is None:
        return await read()
    return await cache.get("channels", tenant_id, read)


# -- the rules of a write -----------------------------------------------------------------------


def expiry(
    rule: ChannelRule | None,
    *,
    expires_at: datetime | None,
    ttl_seconds: int | None,
    default_ttl_seconds: int,
    where: str | None = None,
) -> datetime | None:
    """When a message expires: the client's expires_at or ttl_seconds (422 `ttl_violation` past
    the channel's ttl_sec), else the channel's ttl_sec, else the tenant's default TTL, else
    never."""
    now = datetime.now(UTC)
    ceiling = rule.settings.ttl_sec if rule is not None else None
    if rule is not None and ceiling is not None:
        prefix = f"{where}: " if where else ""
        if ttl_seconds is not None and ttl_seconds > ceiling:
            raise TtlViolation(
                f"{prefix}ttl_seconds {ttl_seconds} is past channel {rule.name!r}'s ttl_sec "
                f"{ceiling}"
            )
        if expires_at is not None and expires_at > now + timedelta(seconds=ceiling) + TTL_SLACK:
            raise TtlViolation(
                f"{prefix}expires_at {expires_at.isoformat()} is further than channel "
                f"{rule.name!r}'s ttl_sec {ceiling} seconds ahead"
            )
    if expires_at is not None:
        return expires_at
    ttl = ttl_seconds if ttl_seconds is not None else ceiling or default_ttl_seconds
    return now + timedelta(seconds=ttl) if ttl else None


def pii_mode(rule: ChannelRule | None, tenant_mode: PiiMode) -> PiiMode:
    """The PII mode a write to this channel is screened with: `allow` keeps the tenant's;
    `redact` and `refuse` force redact and reject; `require_encryption` keeps the tenant's on an
    encrypted channel and, on one that is not, at least detects (what is found is then refused
    by `check_pii`, unless the tenant's mode redacted it away)."""
    if rule is None or rule.settings.pii is ChannelPii.allow:
        return tenant_mode
    if rule.settings.pii is ChannelPii.redact:
        return PiiMode.redact
    if rule.settings.pii is ChannelPii.refuse:
        return PiiMode.reject
    if rule.settings.encrypt or tenant_mode in (PiiMode.redact, PiiMode.reject):
        return tenant_mode
    return PiiMode.detect


def check_pii(
    rule: ChannelRule | None, mode: PiiMode, kinds: Sequence[str], where: str | None = None
) -> None:
    """422 `encryption_required`: personal data found for a channel that takes it only
    encrypted, and is not."""
    if (
        rule is not None
        and rule.settings.pii is ChannelPii.require_encryption
        and not rule.settings.encrypt
        and mode is PiiMode.detect
        and kinds
    ):
        prefix = f"{where}: " if where else ""
        raise EncryptionRequired(
            {
                "message": f"{prefix}the content holds personal data ({', '.join(kinds)}); "
                f"channel {rule.name!r} takes personal data only when it is encrypted",
                "channel": rule.name,
                "kinds": list(kinds),
            }
        )


def sealed_columns(
    rule: ChannelRule | None,
    ring: EncryptionKeyRing,
    tenant_id: str,
    message_id: uuid.UUID,
    content: str,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """The stored columns of a message's text: as given, or, on an encrypted channel, '' and {}
    with the ciphertext of both and its key id (consolidation then leaves the row alone: what
    it distils would be stored in the clear)."""
    if rule is None or not rule.settings.encrypt:
        return {"content": content, "metadata": metadata}
    sealed = seal_message(ring, tenant_id, message_id, content, metadata)
    return {
        "content": "",
        "metadata": {},
        "encryption_key_id": sealed.key_id,
        "ciphertext": sealed.ciphertext,
        "consolidation_status": None,
    }


def utc_day() -> date:
    return datetime.now(UTC).date()


async def consume_quota(
    session: AsyncSession,
    tenant_id: str,
    writes: Sequence[tuple[ChannelRule | None, str | None, int]],
) -> None:
    """Count the bytes of a write against each channel's daily quota per user, in the writing
    transaction (`writes`: rule, user_id, content bytes); 429 `quota_exceeded`, naming the
    window and when it resets, when one would pass it (the caller's transaction then rolls
    back, with every counter it moved)."""
    totals: dict[tuple[str, str], tuple[int, int, str | None]] = {}
    for rule, user_id, nbytes in writes:
        if rule is None or rule.settings.quota_bytes is None:
            continue
        key = (rule.name, user_id or "")
        _, added, _ = totals.get(key, (0, 0, None))
        totals[key] = (rule.settings.quota_bytes, added + nbytes, user_id)
    if not totals:
        return
    day = utc_day()
    repository = ChannelRepository(session)
    # In key order: two batches touching the same counters lock them in the same order.
    for (channel, user), (quota, nbytes, user_id) in sorted(totals.items()):
        if await repository.consume(tenant_id, channel, user, day, nbytes, quota) is None:
            used = await repository.used(tenant_id, channel, user, day)
            raise ChannelQuotaExceeded(channel, user_id, quota, used, nbytes, day)


# -- registration -------------------------------------------------------------------------------


def _check_settings(name: str, settings: ChannelSettings, ring: EncryptionKeyRing) -> None:
    check_name(name)
    if settings.ttl_sec is not None and not TTL_MIN <= settings.ttl_sec <= TTL_MAX:
        raise InvalidInput(f"ttl_sec must be {TTL_MIN} to {TTL_MAX}", code="invalid_channel")
    if settings.quota_bytes is not None and settings.quota_bytes < 1:
        raise InvalidInput("quota_bytes must be at least 1", code="invalid_channel")
    if settings.encrypt and ring.empty:
        raise EncryptionUnavailable(
            f"channel {name!r} is encrypted, and this service has no encryption key: set "
            "MEMORY_ENCRYPTION_KEYS (docs/operations.md, Encryption at rest)"
        )


async def put_channel(
    session: AsyncSession,
    tenant_id: str,
    name: str,
    settings: ChannelSettings,
    *,
    actor: audit.Actor,
) -> Channel:
    """Register a channel of the tenant, or replace its rules; audited. Its rules apply from the
    next write on; messages already stored keep their expiry and their encryption."""
    _check_settings(name, settings, keyring_of(session))
    channel = await ChannelRepository(session).upsert(
        tenant_id,
        name,
        {
            "ttl_sec": settings.ttl_sec,
            "encrypt": settings.encrypt,
            "quota_bytes": settings.quota_bytes,
            "pii": settings.pii.value,
        },
    )
    await audit.record(
        session,
        audit.AuditAction.channel_updated,
        actor=actor,
        tenant_id=tenant_id,
        target=f"channel:{name}",
        counts={
            name: value
            for name, value in (
                ("ttl_sec", settings.ttl_sec),
                ("encrypt", int(settings.encrypt)),
                ("quota_bytes", settings.quota_bytes),
            )
            if value is not None
        },
    )
    return channel


async def get_channel(session: AsyncSession, tenant_id: str, name: str) -> Channel:
    """One registered channel of the tenant, or 404."""
    channel = await ChannelRepository(session).get(tenant_id, name)
    if channel is None:
        raise NotFound(f"tenant {tenant_id!r} has no channel {name!r}", code="channel_not_found")
    return channel


async def all_channels(session: AsyncSession, tenant_id: str) -> list[Channel]:
    """Every registered channel of the tenant, by name."""
    return await ChannelRepository(session).all(tenant_id)


async def list_channels(
    session: AsyncSession, tenant_id: str, page: PageRequest, *, cursors: CursorCodec
) -> Page[Channel]:
    """The tenant's registered channels, by name, a page at a time."""
    return await paginate(
        session,
        ChannelRepository(session).listing(tenant_id),
        pagination=page,
        keyset=BY_NAME,
        codec=cursors,
        scope={"tenant_id": tenant_id, "listing": "channels"},
    )


async def delete_channel(
    session: AsyncSession, tenant_id: str, name: str, *, actor: audit.Actor
) -> None:
    """Unregister a channel (404 if the tenant has none by that name); audited. Its messages
    stay, with their expiry and encryption; once the tenant has no channels left, writes are
    free again."""
    if await ChannelRepository(session).delete(tenant_id, name) == 0:
        raise NotFound(f"tenant {tenant_id!r} has no channel {name!r}", code="channel_not_found")
    await audit.record(
        session,
        audit.AuditAction.channel_deleted,
        actor=actor,
        tenant_id=tenant_id,
        target=f"channel:{name}",
    )


# -- keys ---------------------------------------------------------------------------------------


class MissingEncryptionKey(RuntimeError):
    """Encrypted channels (or encrypted messages) exist and MEMORY_ENCRYPTION_KEYS is unset."""


async def check_keys(session: AsyncSession, ring: EncryptionKeyRing) -> None:
    """At start-up: refuse to run without a key when something is, or is to be, encrypted."""
    if ring.empty and await ChannelRepository(session).any_encrypted_channel():
        raise MissingEncryptionKey(
            "encrypted channels or encrypted messages exist, and MEMORY_ENCRYPTION_KEYS is "
            "unset: set it to the key ring they were written with (id:base64-of-32-bytes,...; "
            "docs/operations.md, Encryption at rest)"
        )


@dataclass(frozen=True)
class RotationProgress:
    done: int
    remaining: int


async def rotate_encryption(
    sessionmaker: async_sessionmaker[AsyncSession],
    ring: EncryptionKeyRing,
    *,
    tenant_id: str | None = None,
    batch_size: int = 500,
    progress: Callable[[RotationProgress], None] | None = None,
) -> int:
    """Re-encrypt every message stored under an older key with the ring's newest one, a batch
    per transaction (resumable: a run stopped midway leaves committed batches done, and the next
    run starts with what is left). The number of messages re-encrypted."""
    current = ring.current
    done = 0
    async with sessionmaker() as session:
        remaining = await ChannelRepository(session).count_encrypted(tenant_id, current)
    if progress is not None:
        progress(RotationProgress(0, remaining))
    while True:
        async with sessionmaker.begin() as session:
            repository = ChannelRepository(session)
            rows = await repository.encrypted_batch(tenant_id, current, batch_size)
            for tenant, message_id, key_id, ciphertext in rows:
                content, metadata = open_message(ring, tenant, message_id, key_id, ciphertext)
                sealed = seal_message(ring, tenant, message_id, content, metadata)
                await repository.rewrite_ciphertext(
                    tenant, message_id, sealed.key_id, sealed.ciphertext
                )
        if not rows:
            return done
        done += len(rows)
        remaining = max(0, remaining - len(rows))
        if progress is not None:
            progress(RotationProgress(done, remaining))
