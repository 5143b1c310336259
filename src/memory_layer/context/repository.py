"""SQL of the context: a conversation's state, newest summary and last turns in one statement."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.kit.crypto import keyring_of, open_message
from memory_layer.models.message import CURRENT_SQL, UNEXPIRED_SQL, Kind, Role

# One round trip for everything the context reads of the conversation itself (the long-term
# memories come from the search service). Each branch is served by the primary key of
# conversation_states or by the (tenant_id, conversation_id, created_at) index of messages, read
# backwards. `turn` rows are the last :max_turns turns, newest first; `last_user` is the newest
# user turn (the default query), asked for only when the caller gave no query.
# Live: not archived, not expired, not replaced by a newer fact or summary (consolidation/).
_LIVE = (
    f"archived_at IS NULL AND {UNEXPIRED_SQL} AND {CURRENT_SQL}"
    " AND (CAST(:channel AS text) IS NULL OR channel = :channel)"
)
_CONVERSATION = "tenant_id = :tenant_id AND conversation_id = :conversation_id"
_COLUMNS = (
    "id, role, content, created_at, user_id, NULL::jsonb AS document, NULL::bigint AS version, "
    "encryption_key_id, ciphertext"
)

STATE = f"""(SELECT 'state' AS part, NULL::uuid AS id, NULL AS role, NULL AS content,
        updated_at AS created_at, user_id, document, version,
        NULL AS encryption_key_id, NULL::bytea AS ciphertext
 FROM conversation_states
 WHERE {_CONVERSATION} AND (expires_at IS NULL OR expires_at > now()))"""
SUMMARY = f"""(SELECT 'summary' AS part, {_COLUMNS} FROM messages
 WHERE {_CONVERSATION} AND kind = '{Kind.summary.value}' AND {_LIVE}
 ORDER BY created_at DESC, id DESC LIMIT 1)"""
TURNS = f"""(SELECT 'turn' AS part, {_COLUMNS} FROM messages
 WHERE {_CONVERSATION} AND kind = '{Kind.message.value}' AND {_LIVE}
 ORDER BY created_at DESC, id DESC LIMIT :max_turns)"""
LAST_USER = f"""(SELECT 'last_user' AS part, {_COLUMNS} FROM messages
 WHERE {_CONVERSATION} AND kind = '{Kind.message.value}' AND role = '{Role.user.value}' AND {_LIVE}
 ORDER BY created_at DESC, id DESC LIMIT 1)"""

WINDOW_SQL = f"{STATE}\nUNION ALL\n{SUMMARY}\nUNION ALL\n{TURNS}"
WINDOW_WITH_LAST_USER_SQL = f"{WINDOW_SQL}\nUNION ALL\n{LAST_USER}"


@dataclass(frozen=True)
class StoredMessage:
    id: uuid.UUID
    role: str
    content: str
    created_at: datetime
    user_id: str | None


@dataclass(frozen=True)
class StoredState:
    document: Any
    version: int
    user_id: str | None


@dataclass(frozen=True)
class Window:
    """What the conversation holds for its context: its live state, its newest summary, its
    last turns (newest first) and, when asked for, its newest user turn."""

    state: StoredState | None
    summary: StoredMessage | None
    turns: list[StoredMessage]
    last_user_turn: StoredMessage | None


class ContextRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def window(
        self,
        tenant_id: str,
        conversation_id: str,
        *,
        max_turns: int,
        with_last_user_turn: bool,
        channel: str | None = None,
    ) -> Window:
        """The conversation's state, newest summary and last `max_turns` turns, in one statement
        (archived and expired messages left out, as every read does)."""
        sql = WINDOW_WITH_LAST_USER_SQL if with_last_user_turn else WINDOW_SQL
        result = await self.session.execute(
            text(sql),
            {"tenant_id": tenant_id, "conversation_id": conversation_id, "max_turns": max_turns,
             "channel": channel},
        )
        ring = keyring_of(self.session)
        state: StoredState | None = None
        summary: StoredMessage | None = None
        last_user: StoredMessage | None = None
        turns: list[StoredMessage] = []
        for row in result:
            if row.part == "state":
                state = StoredState(row.document, int(row.version), row.user_id)
                continue
            content = row.content
            if row.ciphertext is not None:
                # An encrypted channel's turn, opened for the context.
                content = open_message(
                    ring, tenant_id, row.id, row.encryption_key_id, row.ciphertext
                )[0]
            message = StoredMessage(row.id, row.role, content, row.created_at, row.user_id)
            if row.part == "summary":
                summary = message
            elif row.part == "last_user":
                last_user = message
            else:
                turns.append(message)
        # UNION ALL keeps each branch's rows together but promises no order: newest first again.
        turns.sort(key=lambda turn: (turn.created_at, turn.id), reverse=True)
        return Window(state, summary, turns, last_user)
