"""Messages: ingestion (one or a batch, idempotently), edits and deletes."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from enum import Enum, StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from memory_layer.audit import service as audit
from memory_layer.channels import service as channels
from memory_layer.channels.service import DEFAULT_CHANNEL, ChannelRule, ChannelRules
from memory_layer.config import Settings
from memory_layer.embeddings.providers.base import EmbeddingError, EmbeddingProvider
from memory_layer.embeddings.service import embed_all_or_defer, embed_or_defer
from memory_layer.kit.cache import note_write
from memory_layer.kit.crypto import keyring_of, seal_message
from memory_layer.kit.db.vectors import check_vector
from memory_layer.kit.errors import Conflict, InvalidInput, NotFound
from memory_layer.kit.ids import new_id
from memory_layer.kit.observability.metrics import Metrics
from memory_layer.kit.pagination import (
    CursorCodec,
    Keyset,
    Page,
    PageRequest,
    Scope,
    ScopeValue,
    SortOrder,
    paginate,
)
from memory_layer.messages.importance import importance_for
from memory_layer.messages.repository import BY_IMPORTANCE, BY_TIME, MessageRepository
from memory_layer.messages.repository import NewRow as NewRow  # for insert_rows' callers
from memory_layer.models.message import EmbeddingStatus, Kind, Message, Role, decrypt_transient
from memory_layer.models.policy import PiiMode
from memory_layer.pii.service import PiiRejected, screen_all
from memory_layer.policies.service import EffectivePolicy, check_usage, lock_usage, quota_guard
from memory_layer.search.plan import SearchFilters

# Client clocks drift; anything further ahead than this is a bug on their side, not an import.
MAX_CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class NewMessage:
    """A message to store, as the service sees it (the HTTP schema, the CLI or an import)."""

    conversation_id: str
    role: Role
    content: str
    kind: Kind = Kind.message
    user_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    importance_override: float | None = None
    client_message_id: str | None = None
    created_at: datetime | None = None
    ttl_seconds: int | None = None
    expires_at: datetime | None = None
    # The client's own vector and its model: stored as given (ready), never embedded again.
    embedding: list[float] | None = None
    embedding_model: str | None = None
    channel: str = DEFAULT_CHANNEL


@dataclass(frozen=True)
class IngestResult:
    message: Message
    replayed: bool


def _located(where: str | None, detail: str) -> str:
    """Prefix a batch item's position (`messages[3]: ...`) so the client knows which one."""
    return f"{where}: {detail}" if where else detail


def _check_metadata(metadata: dict[str, Any], limit: int, where: str | None = None) -> None:
    encoded = json.dumps(metadata, ensure_ascii=False, separators=(",", ":"))
    if "\\u0000" in encoded:
        raise InvalidInput(_located(where, "metadata must not contain NUL (\\u0000) characters"),
                           code="invalid_metadata")
    size = len(encoded.encode("utf-8"))
    if size > limit:
        raise InvalidInput(
            _located(
                where,
                f"metadata is {size} bytes as JSON; the limit is {limit} (MEMORY_MAX_METADATA_BYTES)",
            ),
            code="metadata_too_large",
        )


def _check_content(content: str, settings: Settings, where: str | None = None) -> None:
    if len(content) > settings.max_content_chars:
        raise InvalidInput(
            _located(
                where,
                f"content has {len(content)} characters; the limit is "
                f"{settings.max_content_chars} (MEMORY_MAX_CONTENT_CHARS). Split the message.",
            ),
            code="content_too_long",
        )


def check_limits(
    content: str,
    metadata: dict[str, Any],
    created_at: datetime | None,
    settings: Settings,
    where: str | None = None,
) -> None:
    """The limits every stored message obeys (POST, batch, import); InvalidInput names the one
    broken, prefixed by `where` (a batch item, an import line)."""
    _check_content(content, settings, where)
    _check_metadata(metadata, settings.max_metadata_bytes, where)
    if created_at is not None and created_at > datetime.now(UTC) + MAX_CLOCK_SKEW:
        raise InvalidInput(_located(where, "created_at lies in the future"),
                           code="invalid_created_at")


def _check(data: NewMessage, settings: Settings, where: str | None = None) -> None:
    check_limits(data.content, data.metadata, data.created_at, settings, where)
    if data.embedding is not None:
        check_vector(data.embedding, settings.embedding_dimensions, where=where)
    if data.expires_at is not None and data.expires_at <= datetime.now(UTC):
        raise InvalidInput(_located(where, "expires_at lies in the past"), code="invalid_expires_at")


def _expiry(
    data: NewMessage,
    policy: EffectivePolicy,
    rule: ChannelRule | None = None,
    where: str | None = None,
) -> datetime | None:
    """When the message expires: the client's expires_at or ttl_seconds (within the channel's
    ttl_sec, 422 ttl_violation past it), else the channel's ttl_sec, else the tenant's default
    TTL, else never."""
    return channels.expiry(
        rule, expires_at=data.expires_at, ttl_seconds=data.ttl_seconds,
        default_ttl_seconds=policy.default_ttl_seconds, where=where,
    )


async def _screened(
    items: Sequence[NewMessage],
    policy: EffectivePolicy,
    where: str | None = None,
    rules: Sequence[ChannelRule | None] | None = None,
) -> list[tuple[NewMessage, list[str]]]:
    """Each message as the tenant's PII mode (or its channel's PII rule) lets it be stored
    (redacted content), with the kinds found; raises 422 pii_rejected in reject mode, 422
    encryption_required for personal data on a channel that takes it only encrypted. Runs
    before the text is embedded or stored."""
    rules = rules if rules is not None else [None] * len(items)
    modes = [channels.pii_mode(rule, policy.pii_mode) for rule in rules]
    results: list[Any] = [None] * len(items)
    # One screening per mode (a batch's items on different channels may differ).
    for mode in dict.fromkeys(modes):
        indexes = [index for index, item_mode in enumerate(modes) if item_mode is mode]
        try:
            found = await screen_all(
                [items[index].content for index in indexes], mode,
                phone_region=policy.pii_phone_region,
            )
        except PiiRejected as exc:
            # Screened item by item only when refused: the error names the batch's own index.
            for index in indexes:
                await _screened_one(items[index], mode, policy, where, index)
            raise exc  # pragma: no cover - one of them raised
        for index, result in zip(indexes, found, strict=True):
            channels.check_pii(
                rules[index], mode, result.kinds,
                f"{where}[{index}]" if where is not None else None,
            )
            results[index] = result
    return [
        (replace(item, content=result.content), result.kinds)
        for item, result in zip(items, results, strict=True)
    ]


async def _screened_one(
    item: NewMessage, mode: PiiMode, policy: EffectivePolicy, where: str | None, index: int
) -> None:
    try:
        await screen_all([item.content], mode, phone_region=policy.pii_phone_region)
    except PiiRejected as exc:
        kinds = list(exc.detail["kinds"]) if isinstance(exc.detail, dict) else []
        raise PiiRejected(kinds, f"{where}[{index}]" if where else None) from None


def _identity(data: NewMessage) -> tuple[Any, ...]:
    """What a retry with the same client_message_id must repeat (importance_override and
    created_at are not compared: a retry may compute them afresh)."""
    return (data.conversation_id, data.role.value, data.kind.value, data.content, data.user_id,
            data.metadata)


def _stored_identity(message: Message) -> tuple[Any, ...]:
    return (message.conversation_id, message.role, message.kind, message.content, message.user_id,
            message.metadata_)


def _same_message(existing: Message, data: NewMessage) -> bool:
    return _stored_identity(existing) == _identity(data)


def _embedded(vector: list[float], model: str) -> dict[str, Any]:
    """The columns of a message that has its vector: ready, off the worker's queue, no error or
    lease left over from an earlier attempt."""
    return {
        "embedding": vector,
        # The text changed: the worker computes its context vector anew.
        "context_embedding": None,
        "embedding_model": model,
        # The service's vector unless the caller says the client supplied it.
        "embedding_supplied": False,
        "embedding_status": EmbeddingStatus.ready.value,
        "embedded_at": datetime.now(UTC),
        "embedding_error": None,
        "embedding_attempts": 0,
        "embedding_next_attempt_at": None,
        "embedding_lease_owner": None,
        "embedding_lease_expires_at": None,
    }


def _importance(data: NewMessage) -> float:
    if data.importance_override is not None:
        return data.importance_override
    return importance_for(data.role.value, data.content)


async def ingest_message(
    session: AsyncSession,
    tenant_id: str,
    data: NewMessage,
    *,
    settings: Settings,
    embedder: EmbeddingProvider,
    metrics: Metrics,
    policy: EffectivePolicy,
    request_id: str | None = None,
    channel_rules: ChannelRules | None = None,
) -> IngestResult:
    """Store one message; a retried client_message_id returns the original.

    The tenant's policy applies first: its PII mode (the redacted text is what is embedded and
    stored), its default TTL and its quotas; then its channel's rules (channels/service.py:
    TTL ceiling, PII rule, daily quota, encryption). Inline mode embeds before the transaction
    starts (status ready). With MEMORY_ASYNC_EMBEDDINGS, or when the provider fails inline, the
    message is committed as pending and the worker embeds it.
    """
    _check(data, settings)
    rule = channel_rules.rule_for(data.channel) if channel_rules is not None else None
    expires_at = _expiry(data, policy, rule)
    [(data, pii_kinds)] = await _screened([data], policy, rules=[rule])
    vector: list[float] | None = data.embedding
    error: str | None = None
    if vector is None and not settings.async_embeddings:
        # First the model, then the database: no pooled connection waits in a transaction
        # while a remote provider takes its time.
        vector, failure = await embed_or_defer(data.content, embedder, metrics)
        if failure is not None:
            error = _failure_text(failure)

    repository = MessageRepository(session)
    if data.client_message_id is not None:
        existing = await repository.get_by_client_id(tenant_id, data.client_message_id)
        if existing is not None:
            return _replay(existing, data)

    message_id = new_id()
    text = channels.sealed_columns(
        rule, keyring_of(session), tenant_id, message_id, data.content, data.metadata
    )
    values: dict[str, Any] = {
        "tenant_id": tenant_id,
        "id": message_id,
        "conversation_id": data.conversation_id,
        "user_id": data.user_id,
        "role": data.role.value,
        "kind": data.kind.value,
        "importance": _importance(data),
        "client_message_id": data.client_message_id,
        "request_id": request_id,
        "expires_at": expires_at,
        "pii_kinds": pii_kinds,
        "channel": data.channel,
        **{("metadata_" if name == "metadata" else name): value for name, value in text.items()},
    }
    if data.embedding is not None and data.embedding_model is not None:
        values.update(_embedded(data.embedding, data.embedding_model))
        values["embedding_supplied"] = True
    elif vector is not None:
        values.update(_embedded(vector, embedder.model_name))
    else:
        # The row is the worker's job; the insert trigger NOTIFYs listening workers on commit.
        values.update(embedding_status=EmbeddingStatus.pending.value, embedding_error=error)
    if data.created_at is not None:
        values["created_at"] = data.created_at
    async with quota_guard(
        session, policy, (1, len(data.content.encode())), {data.conversation_id: 1}
    ):
        message = await repository.insert_if_new(values)
    if message is None:
        # A concurrent retry with the same client_message_id won the race.
        assert data.client_message_id is not None
        existing = await repository.get_by_client_id(tenant_id, data.client_message_id)
        if existing is None:  # pragma: no cover - the conflicting row cannot vanish mid-transaction
            raise Conflict("idempotency race; retry the request", code="idempotency_race")
        return _replay(existing, data)
    # After the insert (a replay above counts nothing); an excess rolls the insert back.
    await channels.consume_quota(
        session, tenant_id, [(rule, data.user_id, len(data.content.encode()))]
    )
    metrics.messages_ingested.labels(role=data.role.value).inc()
    note_write(session, tenant_id)
    audit.note(target=f"message:{message.id}", messages=1)
    return IngestResult(message=decrypt_transient(message, keyring_of(session)), replayed=False)


def _replay(existing: Message, data: NewMessage, where: str | None = None) -> IngestResult:
    if existing.expires_at is not None and existing.expires_at <= datetime.now(UTC):
        raise Conflict(
            _located(
                where,
                f"client_message_id {data.client_message_id!r} belongs to a message that has "
                "expired; use a new one",
            ),
            code="idempotency_key_expired",
        )
    if not _same_message(existing, data):
        raise Conflict(
            _located(
                where,
                f"client_message_id {data.client_message_id!r} was already used for a different "
                "message in this tenant",
            ),
            code="idempotency_key_reused",
        )
    return IngestResult(message=existing, replayed=True)


def _failure_text(failure: EmbeddingError) -> str:
    return f"{failure.kind}: {failure}"


@dataclass(frozen=True)
class BatchItemResult:
    """What became of one item of a batch."""

    message_id: uuid.UUID
    embedding_status: EmbeddingStatus
    replayed: bool


def _batch_replay(existing: Message, data: NewMessage, index: int) -> BatchItemResult:
    _replay(existing, data, f"messages[{index}]")
    return BatchItemResult(existing.id, EmbeddingStatus(existing.embedding_status), replayed=True)


async def ingest_batch(
    session: AsyncSession,
    tenant_id: str,
    items: Sequence[NewMessage],
    *,
    settings: Settings,
    embedder: EmbeddingProvider,
    metrics: Metrics,
    sessionmaker: async_sessionmaker[AsyncSession],
    policy: EffectivePolicy,
    request_id: str | None = None,
    channel_rules: ChannelRules | None = None,
) -> list[BatchItemResult]:
    """Store up to MEMORY_MAX_BATCH_MESSAGES messages of one tenant, all or nothing.

    Every item is checked before anything is written; an error names the item's index. Inline
    mode embeds every new text in one provider call before the transaction, then one INSERT
    writes the rows. Each item is idempotent on its client_message_id, also against an earlier
    item of the same batch (which it then replays).
    """
    if len(items) > settings.max_batch_messages:
        raise InvalidInput(
            f"the batch has {len(items)} messages; the limit is {settings.max_batch_messages} "
            "(MEMORY_MAX_BATCH_MESSAGES)",
            code="batch_too_large",
        )
    for index, item in enumerate(items):
        _check(item, settings, f"messages[{index}]")
    rules = [
        channel_rules.rule_for(item.channel, f"messages[{index}]")
        if channel_rules is not None else None
        for index, item in enumerate(items)
    ]
    expiries = [
        _expiry(item, policy, rule, f"messages[{index}]")
        for index, (item, rule) in enumerate(zip(items, rules, strict=True))
    ]
    screened = await _screened(items, policy, "messages", rules)
    items = [item for item, _ in screened]
    found = [kinds for _, kinds in screened]
    first_with_key: dict[str, int] = {}
    for index, item in enumerate(items):
        key = item.client_message_id
        if key is None:
            continue
        first = first_with_key.setdefault(key, index)
        if first != index and _identity(items[first]) != _identity(item):
            raise Conflict(
                f"messages[{index}]: client_message_id {key!r} is also used by messages[{first}] "
                "for a different message",
                code="idempotency_key_reused",
            )
    # The items to store: each without a key, and the first of each key.
    fresh = [
        index
        for index, item in enumerate(items)
        if item.client_message_id is None or first_with_key[item.client_message_id] == index
    ]

    # Vectors the clients supplied are stored as given; only the other texts go to the model.
    vectors: dict[int, list[float]] = {}
    for index in fresh:
        supplied = items[index].embedding
        if supplied is not None:
            vectors[index] = supplied
    error: str | None = None
    if not settings.async_embeddings:
        stored: set[str] = set()
        if first_with_key:
            # A retried batch finds its items stored: they need no second model call. The
            # look-up has a short session of its own, closed before the model runs.
            async with sessionmaker() as lookup:
                stored = await MessageRepository(lookup).stored_client_ids(
                    tenant_id, list(first_with_key)
                )
        to_embed = [
            index
            for index in fresh
            if index not in vectors
            and (
                items[index].client_message_id is None
                or items[index].client_message_id not in stored
            )
        ]
        if to_embed:
            embedded, failure = await embed_all_or_defer(
                [items[index].content for index in to_embed], embedder, metrics
            )
            if embedded is not None:
                vectors.update(zip(to_embed, embedded, strict=True))
            elif failure is not None:
                error = _failure_text(failure)

    repository = MessageRepository(session)
    existing = (
        await repository.get_by_client_ids(tenant_id, list(first_with_key)) if first_with_key else {}
    )
    results: list[BatchItemResult | None] = [None] * len(items)
    rows: list[tuple[int, NewRow]] = []
    ring = keyring_of(session)
    for index in fresh:
        item = items[index]
        if item.client_message_id is not None and item.client_message_id in existing:
            results[index] = _batch_replay(existing[item.client_message_id], item, index)
            continue
        # No vector: async mode, a provider failure, or an item the look-up found stored that
        # was deleted since. The row is then the worker's job (the insert trigger NOTIFYs it).
        vector = vectors.get(index)
        row_id = new_id()
        text = channels.sealed_columns(
            rules[index], ring, tenant_id, row_id, item.content, item.metadata
        )
        rows.append(
            (
                index,
                NewRow(
                    id=row_id,
                    conversation_id=item.conversation_id,
                    user_id=item.user_id,
                    role=item.role.value,
                    kind=item.kind.value,
                    content=text["content"],
                    metadata=text["metadata"],
                    channel=item.channel,
                    encryption_key_id=text.get("encryption_key_id"),
                    ciphertext=text.get("ciphertext"),
                    importance=_importance(item),
                    client_message_id=item.client_message_id,
                    created_at=item.created_at,
                    embedding=vector,
                    embedding_error=error if vector is None else None,
                    request_id=request_id,
                    expires_at=expiries[index],
                    pii_kinds=found[index],
                    embedding_model=item.embedding_model if item.embedding is not None else None,
                ),
            )
        )
    # Checked after the insert, on what it really stored (an item whose key a concurrent request
    # stored first is skipped); an excess rolls the whole batch back.
    async with quota_guard(session, policy, conversations=_per_conversation(row for _, row in rows)):
        inserted = await repository.insert_many(
            tenant_id, [row for _, row in rows], embedder.model_name
        )
    if inserted:
        note_write(session, tenant_id)
        # The bytes of what was really stored; an excess rolls the whole batch back.
        await channels.consume_quota(
            session,
            tenant_id,
            [
                (rules[index], items[index].user_id, len(items[index].content.encode()))
                for index, row in rows
                if row.id in inserted
            ],
        )
    raced = [(index, row) for index, row in rows if row.id not in inserted]
    if raced:
        # A concurrent request stored some of the same client_message_ids first.
        keys = [row.client_message_id for _, row in raced if row.client_message_id is not None]
        winners = await repository.get_by_client_ids(tenant_id, keys)
        for index, row in raced:
            winner = winners.get(row.client_message_id) if row.client_message_id else None
            if winner is None:  # pragma: no cover - the conflicting row cannot vanish
                raise Conflict("idempotency race; retry the request", code="idempotency_race")
            results[index] = _batch_replay(winner, items[index], index)
    for index, row in rows:
        if row.id in inserted:
            status = EmbeddingStatus.ready if row.embedding is not None else EmbeddingStatus.pending
            results[index] = BatchItemResult(row.id, status, replayed=False)
            metrics.messages_ingested.labels(role=row.role).inc()
    done: list[BatchItemResult] = []
    for index, result in enumerate(results):
        if result is None:
            # A later item with an earlier item's client_message_id: a replay of that one.
            key = items[index].client_message_id
            assert key is not None
            first_result = results[first_with_key[key]]
            assert first_result is not None
            result = replace(first_result, replayed=True)
        done.append(result)
    replayed = sum(1 for result in done if result.replayed)
    audit.note(messages=len(done) - replayed, replayed=replayed)
    return done


def _per_conversation(rows: Iterable[NewRow]) -> Counter[str]:
    """How many of `rows` each conversation gets (the per-conversation quota's question)."""
    return Counter(row.conversation_id for row in rows)


async def insert_rows(
    session: AsyncSession,
    tenant_id: str,
    rows: Sequence[NewRow],
    *,
    model: str,
    policy: EffectivePolicy,
    channel_rules: ChannelRules | None = None,
) -> dict[uuid.UUID, str]:
    """Insert many messages in one statement, each ready with its vector (made by `model`) or
    pending for the worker; the embedding status of each row stored, by id. A row whose id or
    client_message_id the tenant already has is skipped, not checked: the caller decides. The
    tenant's quotas apply (QuotaExceeded, nothing stored); its PII mode is the caller's. A row
    of a channel `channel_rules` says is encrypted is sealed (its other rules are the caller's)."""
    if channel_rules is not None:
        ring = keyring_of(session)
        sealed_rows = []
        for row in rows:
            rule = channel_rules.rule_for(row.channel)
            text = channels.sealed_columns(
                rule, ring, tenant_id, row.id, row.content, row.metadata
            )
            sealed_rows.append(
                replace(
                    row, content=text["content"], metadata=text["metadata"],
                    encryption_key_id=text.get("encryption_key_id"),
                    ciphertext=text.get("ciphertext"),
                )
            )
        rows = sealed_rows
    async with quota_guard(session, policy, conversations=_per_conversation(rows)):
        stored = await MessageRepository(session).insert_many(tenant_id, rows, model)
    if stored:
        note_write(session, tenant_id)
    return stored


class MessageSort(StrEnum):
    created_at = "created_at"
    importance = "importance"


@dataclass(frozen=True)
class MessageListing:
    """Which of the tenant's messages to list, in which order, and which page."""

    filters: SearchFilters = field(default_factory=SearchFilters)
    sort: MessageSort = MessageSort.created_at
    order: SortOrder = SortOrder.desc
    limit: int = 50
    cursor: str | None = None


def _scope_value(value: object) -> ScopeValue:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    # The metadata filter: canonical JSON, so equal objects make equal scopes.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


async def list_messages(
    session: AsyncSession, tenant_id: str, listing: MessageListing, *, cursors: CursorCodec
) -> Page[Message]:
    """The tenant's messages across conversations, filtered, newest first (or by importance)."""
    scope: Scope = {
        "tenant_id": tenant_id,
        "listing": "messages",
        "sort": listing.sort.value,
        "order": listing.order.value,
        **{
            name: _scope_value(getattr(listing.filters, name))
            for name in (item.name for item in fields(SearchFilters))
        },
    }
    by_importance = listing.sort is MessageSort.importance
    keysets: Mapping[SortOrder, Keyset[Any]] = BY_IMPORTANCE if by_importance else BY_TIME
    return await paginate(
        session,
        MessageRepository(session).listing(tenant_id, listing.filters),
        pagination=PageRequest(listing.limit, listing.cursor),
        keyset=keysets[listing.order],
        codec=cursors,
        scope=scope,
    )


class UsageOutcome(StrEnum):
    success = "success"
    failure = "failure"


async def record_usage(
    session: AsyncSession, tenant_id: str, message_id: uuid.UUID, outcome: UsageOutcome | None
) -> Message:
    """Record that a memory was used (with its outcome, if any): its counts and last_used_at
    change, and with them its rank in search; 404 without such a message."""
    message = await MessageRepository(session).record_usage(
        tenant_id,
        message_id,
        success=outcome is UsageOutcome.success,
        failure=outcome is UsageOutcome.failure,
    )
    if message is None:
        raise _not_found(tenant_id, message_id)
    # The ranking changed: cached searches of the tenant must not outlive this commit.
    note_write(session, tenant_id)
    return message


async def get_message(session: AsyncSession, tenant_id: str, message_id: uuid.UUID) -> Message:
    """One message of the tenant, or 404."""
    message = await MessageRepository(session).get(tenant_id, message_id)
    if message is None:
        raise _not_found(tenant_id, message_id)
    return message


def _not_found(tenant_id: str, message_id: uuid.UUID) -> NotFound:
    return NotFound(f"no message {message_id} in tenant {tenant_id!r}", code="message_not_found")


class MetadataMode(Enum):
    """How an edit's metadata meets the stored one (a plain Enum: `replace` would shadow
    str.replace on a StrEnum)."""

    merge = "merge"
    replace = "replace"


@dataclass(frozen=True)
class MessageChange:
    """An edit of a stored message: None leaves a field as it is."""

    content: str | None = None
    kind: Kind | None = None
    importance: float | None = None
    metadata: dict[str, Any] | None = None
    metadata_mode: MetadataMode = MetadataMode.merge


def merge_patch(target: Any, patch: Any) -> Any:
    """JSON Merge Patch (RFC 7396): objects merge key by key, null removes a key, anything else
    replaces the value."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


async def update_message(
    session: AsyncSession,
    tenant_id: str,
    message_id: uuid.UUID,
    change: MessageChange,
    *,
    settings: Settings,
    embedder: EmbeddingProvider,
    metrics: Metrics,
    policy: EffectivePolicy,
    request_id: str | None = None,
    channel_rules: ChannelRules | None = None,
) -> Message:
    """Edit a message of the tenant (404 if it has none with this id).

    New content is checked like a new message's and embedded before the transaction (inline
    mode); with MEMORY_ASYNC_EMBEDDINGS, or when the provider fails, the message becomes pending
    and the worker embeds the new text. Either way its old vector is gone: search finds it by
    the new text only.
    """
    pii_kinds: list[str] = []
    if change.content is not None:
        _check_content(change.content, settings)
        [result] = await screen_all(
            [change.content], policy.pii_mode, phone_region=policy.pii_phone_region
        )
        change = replace(change, content=result.content)
        pii_kinds = result.kinds
    if change.metadata is not None and change.metadata_mode is MetadataMode.replace:
        _check_metadata(change.metadata, settings.max_metadata_bytes)
    vector: list[float] | None = None
    error: str | None = None
    if change.content is not None and not settings.async_embeddings:
        vector, failure = await embed_or_defer(change.content, embedder, metrics)
        if failure is not None:
            error = _failure_text(failure)

    repository = MessageRepository(session)
    # A content edit changes the tenant's usage row (its trigger, and the quota check). That row
    # is locked before the message: a transaction that has already deleted some of the tenant's
    # rows (a retention run) holds it and may need this message next; locked the other way
    # round, the two would wait on each other.
    usage = await lock_usage(session, tenant_id) if change.content is not None else None
    # Locked until commit: a concurrent edit waits, and so does a worker completing this row
    # (whose write then finds its lease gone and is dropped).
    message = await repository.get_for_update(tenant_id, message_id)
    if message is None:
        raise _not_found(tenant_id, message_id)
    values: dict[str, Any] = {}
    if change.metadata is not None:
        metadata = (
            merge_patch(message.metadata_, change.metadata)
            if change.metadata_mode is MetadataMode.merge
            else change.metadata
        )
        _check_metadata(metadata, settings.max_metadata_bytes)
        values["metadata_"] = metadata
    if change.kind is not None:
        values["kind"] = change.kind.value
    if change.importance is not None:
        values["importance"] = change.importance
    requeue = False
    if change.content is not None and change.content != message.content:
        values["content"] = change.content
        # The worker's lines about the new text carry the id of the edit that wrote it.
        values["request_id"] = request_id
        values["pii_kinds"] = pii_kinds
        if vector is not None:
            values.update(_embedded(vector, embedder.model_name))
        else:
            requeue = True
            values["embedding_error"] = error
    if not values:
        return message
    if usage is not None and "content" in values:
        grown = len(values["content"].encode()) - len(message.content.encode())
        check_usage(policy, usage, (0, grown))
    rule = channel_rules.rule_for(message.channel) if channel_rules is not None else None
    if "content" in values and rule is not None:
        # The channel's PII rule, known once the message is: stricter than the tenant's mode.
        mode = channels.pii_mode(rule, policy.pii_mode)
        [result] = await screen_all(
            [values["content"]], mode, phone_region=policy.pii_phone_region
        )
        channels.check_pii(rule, mode, result.kinds)
        values["content"], values["pii_kinds"] = result.content, result.kinds
    if message.is_encrypted and ("content" in values or "metadata_" in values):
        # An encrypted row stays encrypted: the edited text is sealed again (newest key).
        sealed = seal_message(
            keyring_of(session), tenant_id, message_id,
            values.get("content", message.content), values.get("metadata_", message.metadata_),
        )
        values.update(content="", metadata_={}, encryption_key_id=sealed.key_id,
                      ciphertext=sealed.ciphertext)
    note_write(session, tenant_id)
    return await repository.update(tenant_id, message_id, values, requeue_embedding=requeue)


async def delete_message(
    session: AsyncSession, tenant_id: str, message_id: uuid.UUID, *, actor: audit.Actor
) -> int:
    """Delete a message of the tenant for good (404 if it has none with this id); audited."""
    deleted = await MessageRepository(session).delete(tenant_id, message_id)
    if deleted == 0:
        raise _not_found(tenant_id, message_id)
    await audit.record(
        session,
        audit.AuditAction.message_deleted,
        actor=actor,
        tenant_id=tenant_id,
        target=f"message:{message_id}",
        counts={"messages": deleted},
    )
    note_write(session, tenant_id)
    return deleted
