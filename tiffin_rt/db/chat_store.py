"""Support chat storage: every change is committed together with its event-log row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from asyncpg.pool import PoolConnectionProxy

from tiffin_rt.core.chat import (
    AGENTS_ROOM,
    SUPPORT_CLOSED,
    SUPPORT_MESSAGE,
    SUPPORT_OPENED,
    SUPPORT_READ,
    ChatError,
    Conversation,
    HistoryRequest,
    Message,
    MessageRequest,
    ReadRequest,
    StartRequest,
    forbidden,
    is_agent,
    room_for_conversation,
)
from tiffin_rt.core.events import iso_utc
from tiffin_rt.core.rooms import room_for_user

Executor = asyncpg.Connection | PoolConnectionProxy | asyncpg.Pool

_CONVERSATION = (
    "SELECT id, customer_id, subject, order_id, status, created_at, closed_at, closed_by"
    " FROM tiffin_rt.support_conversations"
)
_MESSAGE = (
    "SELECT id, conversation_id, sender_id, sender_role, body, client_message_id, created_at"
    " FROM tiffin_rt.support_messages"
)
_UNREAD = (
    "SELECT count(*) FROM tiffin_rt.support_messages m WHERE m.conversation_id = $1"
    " AND m.sender_id <> $2 AND m.id > coalesce((SELECT p.last_read_id"
    " FROM tiffin_rt.support_participants p WHERE p.conversation_id = $1 AND p.user_id = $2), 0)"
)


@dataclass(frozen=True, slots=True)
class Who:
    """The person acting, and the connection it acts from (skipped when the event comes back)."""

    user_id: str
    role: str
    origin: str | None = None


@dataclass(frozen=True, slots=True)
class ReadPosition:
    message_id: int
    read_at: datetime
    unread: int
    advanced: bool


@dataclass(frozen=True, slots=True)
class Summary:
    conversation: Conversation
    unread: int
    last_message_at: datetime | None

    def payload(self) -> dict[str, Any]:
        doc = self.conversation.payload()
        doc["unreadCount"] = self.unread
        doc["lastMessageAt"] = iso_utc(self.last_message_at) if self.last_message_at else None
        return doc


def _conversation(row: asyncpg.Record) -> Conversation:
    return Conversation(
        id=row["id"],
        customer_id=row["customer_id"],
        subject=row["subject"],
        order_id=row["order_id"],
        status=row["status"],
        created_at=row["created_at"],
        closed_at=row["closed_at"],
        closed_by=row["closed_by"],
    )


def _message(row: asyncpg.Record) -> Message:
    return Message(
        id=row["id"],
        conversation_id=row["conversation_id"],
        sender_id=row["sender_id"],
        sender_role=row["sender_role"],
        text=row["body"],
        client_message_id=row["client_message_id"],
        created_at=row["created_at"],
    )


def _one(row: asyncpg.Record | None) -> asyncpg.Record:
    """A statement that returns a row by construction (INSERT/UPDATE ... RETURNING)."""
    if row is None:
        raise RuntimeError("expected a row")
    return row


async def _append_event(
    conn: Executor, kind: str, rooms: Sequence[str], payload: dict[str, Any]
) -> None:
    await conn.execute(
        "SELECT tiffin_rt.append_event($1, $2::text[], $3::jsonb)",
        kind,
        list(rooms),
        orjson.dumps(payload).decode(),
    )


class SupportStore:
    """Built in the support chat's cleanup context, on the pool (see chat_wiring)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def _visible(
        self, conn: Executor, who: Who, conversation_id: int, *, lock: bool = False
    ) -> Conversation:
        """The conversation if `who` may see it; a missing one looks forbidden to customers."""
        suffix = " FOR UPDATE" if lock else ""
        row = await conn.fetchrow(f"{_CONVERSATION} WHERE id = $1{suffix}", conversation_id)
        if row is None:
            if is_agent(who.role):
                raise ChatError("not_found", f"no conversation {conversation_id}")
            raise forbidden(conversation_id)
        conversation = _conversation(_one(row))
        if not conversation.visible_to(who.user_id, who.role):
            raise forbidden(conversation_id)
        return conversation

    async def conversation(self, who: Who, conversation_id: int) -> Conversation:
        return await self._visible(self.pool, who, conversation_id)

    async def start(self, who: Who, request: StartRequest) -> Conversation:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "INSERT INTO tiffin_rt.support_conversations (customer_id, subject, order_id)"
                " VALUES ($1, $2, $3) RETURNING id, customer_id, subject, order_id, status,"
                " created_at, closed_at, closed_by",
                who.user_id,
                request.subject,
                request.order_id,
            )
            conversation = _conversation(_one(row))
            await conn.execute(
                "INSERT INTO tiffin_rt.support_participants (conversation_id, user_id, role)"
                " VALUES ($1, $2, $3)",
                conversation.id,
                who.user_id,
                who.role,
            )
            await _append_event(
                conn,
                SUPPORT_OPENED,
                [AGENTS_ROOM, room_for_user(who.user_id)],
                {"conversation": conversation.payload(), "origin": who.origin},
            )
        return conversation

    async def join(self, who: Who, conversation_id: int) -> tuple[Conversation, int]:
        """Record `who` as a participant; returns the conversation and `who`'s unread count."""
        async with self.pool.acquire() as conn:
            conversation = await self._visible(conn, who, conversation_id)
            await conn.execute(
                "INSERT INTO tiffin_rt.support_participants (conversation_id, user_id, role)"
                " VALUES ($1, $2, $3) ON CONFLICT (conversation_id, user_id) DO NOTHING",
                conversation_id,
                who.user_id,
                who.role,
            )
            unread = int(await conn.fetchval(_UNREAD, conversation_id, who.user_id))
        return conversation, unread

    async def read_positions(self, who: Who, conversation_id: int) -> list[dict[str, Any]]:
        """How far the other participants have read, for `read` ticks after a (re)join."""
        rows = await self.pool.fetch(
            "SELECT user_id, last_read_id, last_read_at FROM tiffin_rt.support_participants"
            " WHERE conversation_id = $1 AND user_id <> $2 AND last_read_id > 0"
            " ORDER BY user_id",
            conversation_id,
            who.user_id,
        )
        return [
            {
                "conversationId": conversation_id,
                "userId": r["user_id"],
                "messageId": r["last_read_id"],
                "readAt": iso_utc(r["last_read_at"]),
            }
            for r in rows
        ]

    async def post(self, who: Who, request: MessageRequest) -> tuple[Message, bool]:
        """Store and log a message; (message, True) when this clientMessageId was already sent."""
        async with self.pool.acquire() as conn, conn.transaction():
            # The row lock orders concurrent sends: message ids and log ids agree per conversation.
            conversation = await self._visible(conn, who, request.conversation_id, lock=True)
            existing = await conn.fetchrow(
                f"{_MESSAGE} WHERE conversation_id = $1 AND sender_id = $2"
                " AND client_message_id = $3",
                request.conversation_id,
                who.user_id,
                request.client_message_id,
            )
            if existing is not None:
                return _message(existing), True
            if not conversation.is_open:
                raise ChatError("conversation_closed", f"conversation {conversation.id} is closed")
            row = await conn.fetchrow(
                "INSERT INTO tiffin_rt.support_messages"
                " (conversation_id, sender_id, sender_role, body, client_message_id)"
                " VALUES ($1, $2, $3, $4, $5) RETURNING id, conversation_id, sender_id,"
                " sender_role, body, client_message_id, created_at",
                request.conversation_id,
                who.user_id,
                who.role,
                request.text,
                request.client_message_id,
            )
            message = _message(_one(row))
            # Sending is taking part, and what you wrote yourself is read.
            await conn.execute(
                "INSERT INTO tiffin_rt.support_participants"
                " (conversation_id, user_id, role, last_read_id, last_read_at)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (conversation_id, user_id) DO UPDATE"
                " SET last_read_id = greatest(support_participants.last_read_id, $4),"
                " last_read_at = $5",
                message.conversation_id,
                who.user_id,
                who.role,
                message.id,
                message.created_at,
            )
            await _append_event(
                conn,
                SUPPORT_MESSAGE,
                [room_for_conversation(message.conversation_id)],
                {"message": message.payload(), "origin": who.origin},
            )
        return message, False

    async def read(self, who: Who, request: ReadRequest) -> ReadPosition:
        """Move the reader's position forward (never back) and log a receipt when it moved."""
        async with self.pool.acquire() as conn, conn.transaction():
            await self._visible(conn, who, request.conversation_id)
            found = await conn.fetchval(
                "SELECT true FROM tiffin_rt.support_messages"
                " WHERE id = $1 AND conversation_id = $2",
                request.message_id,
                request.conversation_id,
            )
            if not found:
                raise ChatError(
                    "not_found",
                    f"no message {request.message_id} in conversation {request.conversation_id}",
                )
            row = await conn.fetchrow(
                "INSERT INTO tiffin_rt.support_participants"
                " (conversation_id, user_id, role, last_read_id, last_read_at)"
                " VALUES ($1, $2, $3, $4, clock_timestamp())"
                " ON CONFLICT (conversation_id, user_id) DO UPDATE"
                " SET last_read_id = $4, last_read_at = clock_timestamp()"
                " WHERE support_participants.last_read_id < $4"
                " RETURNING last_read_id, last_read_at",
                request.conversation_id,
                who.user_id,
                who.role,
                request.message_id,
            )
            advanced = row is not None
            if row is None:
                row = await conn.fetchrow(
                    "SELECT last_read_id, last_read_at FROM tiffin_rt.support_participants"
                    " WHERE conversation_id = $1 AND user_id = $2",
                    request.conversation_id,
                    who.user_id,
                )
            position_id: int = _one(row)["last_read_id"]
            read_at: datetime = _one(row)["last_read_at"]
            if advanced:
                await _append_event(
                    conn,
                    SUPPORT_READ,
                    [room_for_conversation(request.conversation_id)],
                    {
                        "read": {
                            "conversationId": request.conversation_id,
                            "userId": who.user_id,
                            "messageId": position_id,
                            "readAt": iso_utc(read_at),
                        },
                        "origin": who.origin,
                    },
                )
            unread = int(await conn.fetchval(_UNREAD, request.conversation_id, who.user_id))
        return ReadPosition(position_id, read_at, unread, advanced)

    async def close(self, who: Who, conversation_id: int) -> tuple[Conversation, bool]:
        """Close once; (conversation, False) when it was already closed."""
        async with self.pool.acquire() as conn, conn.transaction():
            conversation = await self._visible(conn, who, conversation_id, lock=True)
            if not conversation.is_open:
                return conversation, False
            row = await conn.fetchrow(
                "UPDATE tiffin_rt.support_conversations"
                " SET status = 'closed', closed_at = clock_timestamp(), closed_by = $2"
                " WHERE id = $1 RETURNING id, customer_id, subject, order_id, status,"
                " created_at, closed_at, closed_by",
                conversation_id,
                who.user_id,
            )
            closed = _conversation(_one(row))
            await _append_event(
                conn,
                SUPPORT_CLOSED,
                [
                    room_for_conversation(conversation_id),
                    AGENTS_ROOM,
                    room_for_user(closed.customer_id),
                ],
                {"conversation": closed.payload(), "origin": who.origin},
            )
        return closed, True

    async def check_typing(self, who: Who, conversation_id: int, is_typing: bool) -> None:
        """May `who` show typing here? Typing itself is never stored (it crosses nodes through
        the cluster bus): this reads only."""
        conversation = await self._visible(self.pool, who, conversation_id)
        if is_typing and not conversation.is_open:
            raise ChatError("conversation_closed", f"conversation {conversation_id} is closed")

    async def history(self, who: Who, request: HistoryRequest) -> tuple[list[Message], bool]:
        """One page, oldest first, and whether more lie beyond it in the paging direction."""
        async with self.pool.acquire() as conn:
            await self._visible(conn, who, request.conversation_id)
            if request.after is not None:
                rows = await conn.fetch(
                    f"{_MESSAGE} WHERE conversation_id = $1 AND id > $2 ORDER BY id LIMIT $3",
                    request.conversation_id,
                    request.after,
                    request.limit + 1,
                )
            else:
                rows = await conn.fetch(
                    f"{_MESSAGE} WHERE conversation_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
                    request.conversation_id,
                    request.before if request.before is not None else 2**63 - 1,
                    request.limit + 1,
                )
        has_more = len(rows) > request.limit
        page = [_message(r) for r in rows[: request.limit]]
        if request.after is None:
            page.reverse()
        return page, has_more

    async def summaries(self, who: Who, status: str) -> list[Summary]:
        """Agents: every conversation with this status; others: their own, any status."""
        agent = is_agent(who.role)
        rows = await self.pool.fetch(
            "SELECT c.id, c.customer_id, c.subject, c.order_id, c.status, c.created_at,"
            " c.closed_at, c.closed_by,"
            " (SELECT max(m.created_at) FROM tiffin_rt.support_messages m"
            "   WHERE m.conversation_id = c.id) AS last_message_at,"
            " (SELECT count(*) FROM tiffin_rt.support_messages m"
            "   WHERE m.conversation_id = c.id AND m.sender_id <> $1"
            "   AND m.id > coalesce(p.last_read_id, 0)) AS unread"
            " FROM tiffin_rt.support_conversations c"
            " LEFT JOIN tiffin_rt.support_participants p"
            "   ON p.conversation_id = c.id AND p.user_id = $1"
            " WHERE ($2 AND ($3 = 'all' OR c.status = $3)) OR (NOT $2 AND c.customer_id = $1)"
            " ORDER BY c.id DESC LIMIT 500",
            who.user_id,
            agent,
            status,
        )
        return [Summary(_conversation(r), int(r["unread"]), r["last_message_at"]) for r in rows]
