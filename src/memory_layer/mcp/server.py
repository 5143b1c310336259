"""The MCP server's tools, resources and prompt, each a thin call into a service.

Every tool checks the caller's scope (read or write, as the matching REST route does), resolves
the tenant as the routes do (a tenant-bound key acts only for its own tenant), calls one service
in one unit of work and answers JSON; a failure is a tool error with the REST error code.
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, cast

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.prompts.base import UserMessage
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, CallToolResult, ToolAnnotations
from pydantic import Field

from memory_layer import __version__
from memory_layer.channels import service as channels
from memory_layer.consolidation import service as consolidation
from memory_layer.context import service as context
from memory_layer.conversations import service as conversations
from memory_layer.kit.pagination import SortOrder
from memory_layer.kit.schemas import IDENTIFIER_PATTERN, NonBlankText
from memory_layer.mcp.results import answer, error_of, rest_coded_errors
from memory_layer.mcp.runtime import Call, Runtime, RuntimeLifespan
from memory_layer.mcp.schemas import (
    ContextView,
    ConversationPage,
    ConversationView,
    Deleted,
    MemoryPage,
    MemoryView,
    Recall,
    RecalledMemory,
    StateView,
    StoredMemory,
    SummaryView,
)
from memory_layer.messages import service as messages
from memory_layer.models.api_key import KeyScope
from memory_layer.models.conversation_state import ConversationState
from memory_layer.models.message import Kind, Role
from memory_layer.search import service as search
from memory_layer.search.plan import SearchFilters, SearchMode

NAME = "memory-layer"
INSTRUCTIONS = (
    "Long-term memory for this assistant. Call context at the start of a turn (what to know, "
    "within a token budget) and recall before answering anything that may depend on what the "
    "user said before; remember durable facts and preferences (kind fact or "
    "preference, with the user's user_id) and, if asked, conversation turns; forget what the "
    "user asks you to forget. get_state/set_state keep a small JSON working memory per "
    "conversation (pass the etag you read to set_state so a concurrent change is not lost). "
    "The prompt use_memory explains the workflow."
)

Identifier = Annotated[str, Field(pattern=IDENTIFIER_PATTERN, max_length=128)]
TenantId = Annotated[
    Identifier | None,
    Field(description="Leave out when the API key is bound to a tenant (the usual case); keys "
              "that act for any tenant must name one."),
]
ConversationId = Annotated[Identifier, Field(description="The conversation's id.")]
UserId = Annotated[Identifier | None, Field(description="The user the memory is about.")]
MessageId = Annotated[uuid.UUID, Field(description="The message_id of a stored memory.")]
Limit = Annotated[int, Field(ge=1, le=200, description="At most this many items.")]
Cursor = Annotated[str | None, Field(description="next_cursor of the previous page.")]
Metadata = Annotated[dict[str, Any] | None, Field(description="A JSON object stored with it.")]
Importance = Annotated[float | None, Field(ge=0.0, le=1.0, description="0..1; higher ranks first.")]

READS = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True)
WRITES = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False)
DELETES = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False)


def _state_view(state: ConversationState) -> StateView:
    return StateView.model_validate(
        {
            "conversation_id": state.conversation_id,
            "state": state.document,
            "version": state.version,
            "etag": conversations.state_etag(state),
            "user_id": state.user_id,
            "updated_at": state.updated_at,
            "expires_at": state.expires_at,
        }
    )


def _resource_error(exc: Exception) -> MCPError:
    """A resource read that failed: a JSON-RPC error carrying the REST error body."""
    body = error_of(exc)
    return MCPError(code=INVALID_PARAMS, message=json.dumps(body), data=body)


@contextlib.contextmanager
def _logging_left_alone() -> Iterator[None]:
    """The SDK's constructor configures the root logger (logging.basicConfig, its own handler at
    INFO) when it has no handler yet; logging is the application's (kit/observability/logging.py),
    so the root logger has one for that moment, which basicConfig takes as configured."""
    root = logging.getLogger()
    placeholder = logging.NullHandler()
    root.addHandler(placeholder)
    try:
        yield
    finally:
        root.removeHandler(placeholder)


def call(ctx: Context, scope: KeyScope) -> Call:
    """The tool call of `ctx`, by a key that holds `scope`."""
    runtime = cast(Runtime, ctx.request_context.lifespan_context)
    return runtime.call(ctx.request_context.request, scope)


def build_server(lifespan: RuntimeLifespan) -> MCPServer[Runtime]:
    """The MCP server; `lifespan` yields the runtime its calls use (entered once, by the HTTP
    session manager inside the application's lifespan, or by the stdio server)."""
    with _logging_left_alone():
        server: MCPServer[Runtime] = MCPServer(
            NAME, instructions=INSTRUCTIONS, version=__version__, lifespan=lifespan
        )
    server.middleware.append(rest_coded_errors)

    @server.tool(annotations=WRITES)
    async def remember(
        content: Annotated[NonBlankText, Field(description="The text to remember.")],
        conversation_id: ConversationId,
        ctx: Context,
        role: Annotated[Role, Field(description="Who said it (a fact you note yourself: "
                                                "assistant).")] = Role.user,
        kind: Annotated[Kind, Field(description="message: a conversation turn; fact, preference, "
                                                "procedure, summary, event: something to keep "
                                                "about the user or the task.")] = Kind.message,
        user_id: UserId = None,
        importance: Importance = None,
        metadata: Metadata = None,
        ttl_seconds: Annotated[int | None, Field(ge=1, description="Forget it after this many "
                                                 "seconds.")] = None,
        client_message_id: Annotated[Identifier | None, Field(
            description="Idempotency key: a retry with the same id stores nothing new.")] = None,
        channel: Annotated[str, Field(
            pattern=r"^[a-z][a-z0-9_]*$", max_length=50,
            description="The channel (its TTL, quota, PII rule and encryption apply).")] = "default",
        tenant_id: TenantId = None,
    ) -> CallToolResult:
        """Store a memory: a conversation turn, or a fact or preference about the user. It is
        searchable at once."""

        async def work() -> StoredMemory:
            act = call(ctx, KeyScope.write)
            tenant = act.tenant(tenant_id)
            data = messages.NewMessage(
                conversation_id=conversation_id, role=role, content=content, kind=kind,
                user_id=user_id, metadata=metadata or {}, importance_override=importance,
                client_message_id=client_message_id, ttl_seconds=ttl_seconds, channel=channel,
            )
            policy = await act.policy(tenant)
            rules = await channels.load_rules(act.runtime.read_sessionmaker, tenant)
            async with act.transaction() as session:
                result = await messages.ingest_message(
                    session, tenant, data, settings=act.runtime.settings, embedder=act.runtime.embedder,
                    metrics=act.runtime.metrics, policy=policy, request_id=act.request_id,
                    channel_rules=rules,
                )
                stored = StoredMemory.model_validate(result.message)
            return stored.model_copy(update={"replayed": result.replayed})

        return await answer(work())

    @server.tool(annotations=READS)
    async def recall(
        query: Annotated[NonBlankText, Field(max_length=4096,
                                             description="What to look for, in plain words.")],
        ctx: Context,
        top_k: Annotated[int, Field(ge=1, le=100, description="How many memories.")] = 5,
        user_id: UserId = None,
        conversation_id: Annotated[Identifier | None, Field(
            description="Only this conversation's memories.")] = None,
        kind: Annotated[Kind | None, Field(description="Only memories of this kind.")] = None,
        role: Annotated[Role | None, Field(description="Only memories said by this role.")] = None,
        importance_min: Importance = None,
        since: Annotated[datetime | None, Field(description="Stored at or after (ISO 8601).")] = None,
        until: Annotated[datetime | None, Field(description="Stored at or before (ISO 8601).")] = None,
        metadata: Annotated[dict[str, Any] | None, Field(
            description="Only memories whose metadata contains this JSON object.")] = None,
        mode: Annotated[SearchMode, Field(description="hybrid (default): meaning and words; "
                                                      "vector: meaning; keyword: words.")] = (
            SearchMode.hybrid
        ),
        include_archived: bool = False,
        tenant_id: TenantId = None,
    ) -> CallToolResult:
        """Search the memory for what is relevant to a query, best first, with scores."""

        async def work() -> Recall:
            act = call(ctx, KeyScope.read)
            tenant = act.tenant(tenant_id)
            filters = SearchFilters(
                conversation_id=conversation_id, user_id=user_id,
                role=role.value if role is not None else None,
                kind=kind.value if kind is not None else None,
                importance_min=importance_min, since=since, until=until, metadata=metadata,
                include_archived=include_archived,
            )
            async with act.reading() as session:
                outcome = await search.search_memory(
                    session, tenant, search.SearchQuery(query, top_k, mode, filters),
                    settings=act.runtime.settings, embedder=act.runtime.embedder, metrics=act.runtime.metrics,
                    tenant_sizes=act.runtime.tenant_sizes, cache=act.runtime.search_cache,
                )
            items = [RecalledMemory.model_validate(row, from_attributes=True) for row in outcome.rows]
            return Recall(total=len(items), items=items, mode=outcome.mode.value,
                          degraded=outcome.degraded)

        return await answer(work())

    @server.tool(name="context", annotations=READS)
    async def get_context(
        conversation_id: ConversationId,
        ctx: Context,
        query: Annotated[NonBlankText | None, Field(
            max_length=4096, description="What the memories must be relevant to (default: the "
                                         "conversation's newest user turn).")] = None,
        user_id: Annotated[Identifier | None, Field(
            description="Whose memories to search across conversations (default: the "
                        "conversation's user).")] = None,
        budget_tokens: Annotated[int, Field(
            ge=32, le=context.MAX_BUDGET_TOKENS,
            description="The most tokens the context may take.")] = context.DEFAULT_BUDGET_TOKENS,
        max_turns: Annotated[int, Field(
            ge=1, le=context.MAX_TURNS, description="The most recent turns to consider.")] = (
            context.DEFAULT_MAX_TURNS
        ),
        tenant_id: TenantId = None,
    ) -> CallToolResult:
        """Everything to know before the next reply, in one call and within a token budget:
        the working state, the summary, the relevant memories and the last turns, as one text."""

        async def work() -> ContextView:
            act = call(ctx, KeyScope.read)
            async with act.reading() as session:
                built = await context.build_context(
                    session, act.tenant(tenant_id), conversation_id, user_id=user_id, query=query,
                    budget_tokens=budget_tokens, max_turns=max_turns,
                    settings=act.runtime.settings, embedder=act.runtime.embedder,
                    metrics=act.runtime.metrics, tenant_sizes=act.runtime.tenant_sizes,
                    cache=act.runtime.search_cache,
                )
            return ContextView.model_validate(built)

        return await answer(work())

    @server.tool(annotations=READS)
    async def related(
        message_id: MessageId,
        ctx: Context,
        top_k: Annotated[int, Field(ge=1, le=100, description="How many memories.")] = 5,
        user_id: UserId = None,
        kind: Annotated[Kind | None, Field(description="Only memories of this kind.")] = None,
        tenant_id: TenantId = None,
    ) -> CallToolResult:
        """The memories closest in meaning to a stored one (itself left out), best first; error
        embedding_not_ready while it has no vector yet."""

        async def work() -> Recall:
            act = call(ctx, KeyScope.read)
            filters = SearchFilters(user_id=user_id, kind=kind.value if kind is not None else None)
            async with act.reading() as session:
                rows = await search.related_messages(
                    session, act.tenant(tenant_id), message_id, top_k=top_k, filters=filters,
                    settings=act.runtime.settings, embedder=act.runtime.embedder,
                    tenant_sizes=act.runtime.tenant_sizes,
                )
            items = [RecalledMemory.model_validate(row, from_attributes=True) for row in rows]
            return Recall(total=len(items), items=items, mode=SearchMode.vector.value, degraded=None)

        return await answer(work())

    @server.tool(annotations=WRITES)
    async def record_use(
        message_id: MessageId,
        ctx: Context,
        outcome: Annotated[messages.UsageOutcome | None, Field(
            description="success: the memory helped; failure: it was wrong or useless (it then "
                        "ranks lower).")] = None,
        tenant_id: TenantId = None,
    ) -> CallToolResult:
        """Tell the memory that a recalled memory was used, and whether it helped: recall ranks
        by it."""

        async def work() -> StoredMemory:
            act = call(ctx, KeyScope.write)
            async with act.transaction() as session:
                message = await messages.record_usage(
                    session, act.tenant(tenant_id), message_id, outcome
                )
                return StoredMemory.model_validate(message)

        return await answer(work())

    @server.tool(annotations=READS)
    async def history(
        conversation_id: ConversationId,
        ctx: Context,
        limit: Limit = 20,
        cursor: Cursor = None,
        kind: Annotated[Kind | None, Field(description="Only turns of this kind.")] = None,
        include_archived: bool = False,
        tenant_id: TenantId = None,
    ) -> CallToolResult:
        """The last turns of a conversation, oldest first; next_cursor pages further back."""

        async def work() -> MemoryPage:
            act = call(ctx, KeyScope.read)
            tenant = act.tenant(tenant_id)
            query = conversations.HistoryQuery(
                order=SortOrder.desc, limit=limit, cursor=cursor,
                include_archived=include_archived, kind=kind,
            )
            async with act.reading() as session:
                page = await conversations.list_conversation_messages(
                    session, tenant, conversation_id, query, cursors=act.runtime.cursors
                )
            # Fetched newest first (the last N turns); read in the order they were said.
            items = [MemoryView.model_validate(message) for message in reversed(page.items)]
            return MemoryPage(items=items, next_cursor=page.next_cursor)

        return await answer(work())

    @server.tool(annotations=READS)
    async def list_memories(
        ctx: Context,
        user_id: UserId = None,
        kinds: Annotated[list[Kind] | None, Field(
            description="Only these kinds, e.g. [\"fact\", \"preference\"].")] = None,
        conversation_id: Annotated[Identifier | None, Field(
            description="Only this conversation's memories.")] = None,
        limit: Limit = 50,
        cursor: Cursor = None,
        include_archived: bool = False,
        tenant_id: TenantId = None,
    ) -> CallToolResult:
        """List stored memories, newest first, by user, kind and conversation (say, every fact
        and preference about a user, to review or tidy them)."""

        async def work() -> MemoryPage:
            act = call(ctx, KeyScope.read)
            tenant = act.tenant(tenant_id)
            filters = SearchFilters(
                user_id=user_id, conversation_id=conversation_id,
                kinds=tuple(kind.value for kind in kinds) if kinds else None,
                include_archived=include_archived,
            )
            listing = messages.MessageListing(filters=filters, limit=limit, cursor=cursor)
            async with act.reading() as session:
                page = await messages.list_messages(
                    session, tenant, listing, cursors=act.runtime.cursors
                )
            return MemoryPage(
                items=[MemoryView.model_validate(message) for message in page.items],
                next_cursor=page.next_cursor,
            )

        return await answer(work())

    @server.tool(annotations=READS)
    async def facts(
        user_id: Annotated[Identifier, Field(description="The user whose profile to read.")],
        ctx: Context,
        kind: Annotated[Kind | None, Field(
            description="Only fact or only preference; both when left out.")] = None,
        include_superseded: Annotated[bool, Field(
            description="Also the facts a newer value replaced (superseded_by, valid_until).")] = False,
        limit: Limit = 50,
        cursor: Cursor = None,
        tenant_id: TenantId = None,
    ) -> CallToolResult:
        """The user's current profile: the facts and preferences the service distilled from their
        turns (a changed fact replaces the old one), newest first."""

        async def work() -> MemoryPage:
            act = call(ctx, KeyScope.read)
            query = consolidation.FactQuery(
                include_superseded=include_superseded, kind=kind, limit=limit, cursor=cursor
            )
            async with act.reading() as session:
                page = await consolidation.list_user_facts(
                    session, act.tenant(tenant_id), user_id, query, cursors=act.runtime.cursors
                )
            return MemoryPage(
                items=[MemoryView.model_validate(message) for message in page.items],
                next_cursor=page.next_cursor,
            )

        return await answer(work())

    @server.tool(annotations=WRITES)
    async def summarize(
        conversation_id: ConversationId, ctx: Context, tenant_id: TenantId = None
    ) -> CallToolResult:
        """Make the conversation's summary now, covering its newest turn (the service also keeps it
        current by itself); the previous summary is replaced, never duplicated."""

        async def work() -> SummaryView:
            act = call(ctx, KeyScope.write)
            outcome = await consolidation.request_summary(
                act.runtime.sessionmaker, act.tenant(tenant_id), conversation_id, act.distillers()
            )
            return SummaryView(
                message_id=outcome.id, conversation_id=conversation_id, content=outcome.content,
                covers_through=outcome.covers_through, updated=outcome.updated,
            )

        return await answer(work())

    @server.tool(annotations=READS)
    async def get_memory(
        message_id: MessageId, ctx: Context, tenant_id: TenantId = None
    ) -> CallToolResult:
        """One stored memory by its message_id."""

        async def work() -> StoredMemory:
            act = call(ctx, KeyScope.read)
            async with act.reading() as session:
                message = await messages.get_message(session, act.tenant(tenant_id), message_id)
            return StoredMemory.model_validate(message)

        return await answer(work())

    @server.tool(annotations=WRITES)
    async def update_memory(
        message_id: MessageId,
        ctx: Context,
        content: Annotated[NonBlankText | None, Field(description="New text (embedded again).")] = None,
        kind: Annotated[Kind | None, Field(description="New kind.")] = None,
        importance: Importance = None,
        metadata: Annotated[dict[str, Any] | None, Field(
            description="Merged into the stored metadata (a key set to null is removed).")] = None,
        tenant_id: TenantId = None,
    ) -> CallToolResult:
        """Correct a memory: its text, kind, importance or metadata (fields left out stay)."""

        async def work() -> StoredMemory:
            act = call(ctx, KeyScope.write)
            tenant = act.tenant(tenant_id)
            change = messages.MessageChange(
                content=content, kind=kind, importance=importance, metadata=metadata
            )
            policy = await act.policy(tenant)
            rules = await channels.load_rules(act.runtime.read_sessionmaker, tenant)
            async with act.transaction() as session:
                message = await messages.update_message(
                    session, tenant, message_id, change, settings=act.runtime.settings,
                    embedder=act.runtime.embedder, metrics=act.runtime.metrics, policy=policy,
                    request_id=act.request_id, channel_rules=rules,
                )
                return StoredMemory.model_validate(message)

        return await answer(work())

    @server.tool(annotations=DELETES)
    async def forget(
        message_id: MessageId, ctx: Context, tenant_id: TenantId = None
    ) -> CallToolResult:
        """Delete a memory for good (its text, metadata and vector)."""

        async def work() -> Deleted:
            act = call(ctx, KeyScope.write)
            async with act.transaction() as session:
                deleted = await messages.delete_message(
                    session, act.tenant(tenant_id), message_id, actor=act.principal
                )
            return Deleted(deleted=deleted)

        return await answer(work())

    @server.tool(annotations=DELETES)
    async def forget_conversation(
        conversation_id: ConversationId, ctx: Context, tenant_id: TenantId = None
    ) -> CallToolResult:
        """Delete every memory of a conversation, and its state (not undoable)."""

        async def work() -> Deleted:
            act = call(ctx, KeyScope.write)
            async with act.transaction() as session:
                deleted = await conversations.delete_conversation(
                    session, act.tenant(tenant_id), conversation_id, actor=act.principal
                )
            return Deleted(deleted=deleted)

        return await answer(work())

    @server.tool(annotations=READS)
    async def list_conversations(
        ctx: Context,
        user_id: Annotated[Identifier | None, Field(description="Only this user's.")] = None,
        limit: Limit = 20,
        cursor: Cursor = None,
        tenant_id: TenantId = None,
    ) -> CallToolResult:
        """The conversations in memory, most recently active first."""

        async def work() -> ConversationPage:
            act = call(ctx, KeyScope.read)
            query = conversations.ConversationQuery(user_id=user_id, limit=limit, cursor=cursor)
            async with act.reading() as session:
                page = await conversations.list_conversations(
                    session, act.tenant(tenant_id), query, cursors=act.runtime.cursors
                )
            return ConversationPage(
                items=[ConversationView.model_validate(item) for item in page.items],
                next_cursor=page.next_cursor,
            )

        return await answer(work())

    @server.tool(annotations=READS)
    async def get_state(
        conversation_id: ConversationId, ctx: Context, tenant_id: TenantId = None
    ) -> CallToolResult:
        """A conversation's working memory (a JSON object) with its version and etag; error
        state_not_found when it has none."""

        async def work() -> StateView:
            act = call(ctx, KeyScope.read)
            async with act.reading() as session:
                state = await conversations.get_state(session, act.tenant(tenant_id), conversation_id)
            return _state_view(state)

        return await answer(work())

    @server.tool(annotations=WRITES)
    async def set_state(
        conversation_id: ConversationId,
        state: Annotated[dict[str, Any], Field(description="The whole new JSON object.")],
        ctx: Context,
        expected_etag: Annotated[str | None, Field(
            description="The etag get_state answered: the write happens only if the state is "
                        "still at that version (else error precondition_failed: read it "
                        "again).")] = None,
        only_if_absent: Annotated[bool, Field(
            description="Create only: error precondition_failed if a state exists.")] = False,
        ttl_seconds: Annotated[int | None, Field(ge=1, description="Expire after this many "
                                                                   "seconds.")] = None,
        user_id: UserId = None,
        tenant_id: TenantId = None,
    ) -> CallToolResult:
        """Replace a conversation's working memory (compare-and-set with expected_etag)."""

        async def work() -> StateView:
            act = call(ctx, KeyScope.write)
            tenant = act.tenant(tenant_id)
            preconditions = conversations.Preconditions(
                if_match=expected_etag, if_none_match="*" if only_if_absent else None
            )
            quota = (await act.policy(tenant)).max_state_bytes
            async with act.transaction() as session:
                stored, _ = await conversations.put_state(
                    session, tenant, conversation_id,
                    conversations.StateWrite(state, ttl_seconds, user_id),
                    preconditions=preconditions, max_bytes=act.runtime.settings.max_state_bytes,
                    quota_bytes=quota,
                )
                return _state_view(stored)

        return await answer(work())

    @server.resource(
        "memory://conversations/{conversation_id}/history{?tenant_id}",
        name="conversation-history",
        description="The last 50 turns of a conversation, oldest first (JSON).",
        mime_type="application/json",
    )
    async def conversation_history(conversation_id: str, ctx: Context, tenant_id: str | None = None) -> str:
        try:
            act = call(ctx, KeyScope.read)
            tenant = act.tenant(tenant_id)
            query = conversations.HistoryQuery(order=SortOrder.desc, limit=50)
            async with act.reading() as session:
                page = await conversations.list_conversation_messages(
                    session, tenant, conversation_id, query, cursors=act.runtime.cursors
                )
        except Exception as exc:
            raise _resource_error(exc) from exc
        items = [MemoryView.model_validate(message) for message in reversed(page.items)]
        return MemoryPage(items=items, next_cursor=page.next_cursor).model_dump_json()

    @server.resource(
        "memory://users/{user_id}/facts{?tenant_id}",
        name="user-facts",
        description="What is known about a user: their memories of kind fact and preference, "
        "newest first (JSON, at most 100).",
        mime_type="application/json",
    )
    async def user_facts(user_id: str, ctx: Context, tenant_id: str | None = None) -> str:
        try:
            act = call(ctx, KeyScope.read)
            facts = SearchFilters(user_id=user_id, kinds=(Kind.fact.value, Kind.preference.value))
            async with act.reading() as session:
                page = await messages.list_messages(
                    session, act.tenant(tenant_id), messages.MessageListing(facts, limit=100),
                    cursors=act.runtime.cursors,
                )
        except Exception as exc:
            raise _resource_error(exc) from exc
        items = [MemoryView.model_validate(message) for message in page.items]
        return MemoryPage(items=items, next_cursor=page.next_cursor).model_dump_json()

    @server.prompt(
        name="use_memory",
        description="How to use this memory in a conversation: recall first, remember what "
        "lasts, keep working state, forget on request.",
    )
    def use_memory(user_id: str | None = None, conversation_id: str | None = None) -> list[UserMessage]:
        return [UserMessage(usage_guide(user_id, conversation_id))]

    return server


def usage_guide(user_id: str | None, conversation_id: str | None) -> str:
    """The text of the use_memory prompt."""
    user = f"`{user_id}`" if user_id else "the user's id (ask for one, or pick a stable one)"
    conversation = f"`{conversation_id}`" if conversation_id else "an id for this conversation"
    return f"""You have a long-term memory through the memory-layer tools. Use it like this.

Ids: user_id {user}; conversation_id {conversation}.

1. At the start of a turn, `context` gives in one call what to know (working state,
   summary, relevant memories, last turns) within a token budget. To look for something
   specific, call `recall` with it in plain words (add user_id to stay with this user); the
   `score` of each item says how relevant it is. `history` gives the last turns, oldest first.
2. When the user tells you something that should last (a fact about them, a preference, a
   decision), call `remember` with kind "fact" or "preference", their user_id, and one short
   self-contained sentence ("Prefers replies in French"), not the whole turn. Store conversation
   turns with kind "message" if you are asked to keep the transcript.
3. When a remembered fact changes, correct it with `update_memory` (its message_id comes from
   recall or list_memories) rather than storing a contradicting one. `list_memories` with
   user_id and kinds ["fact", "preference"] shows everything kept about the user.
   When a recalled memory helped (or misled you), say so with `record_use` (outcome success or
   failure): recall ranks by it. `related` finds the memories closest to one you have.
4. When the user asks you to forget something, find it with `recall` or `list_memories` and
   call `forget` with its message_id; `forget_conversation` deletes a whole conversation.
5. For the task at hand (a plan, a checklist, slots to fill), keep a small JSON object with
   `get_state` / `set_state`. Pass the `etag` you read as `expected_etag`: if the state changed
   meanwhile, the call fails with precondition_failed; read it again and merge.
6. A failed call answers {{"error": code, "detail": ...}}: insufficient_scope means this key may
   only read; tenant_mismatch means the key belongs to another tenant; message_not_found means
   the id is wrong or already forgotten.

Never store secrets (passwords, keys, card numbers) unless the user explicitly asks you to."""
