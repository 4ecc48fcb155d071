"""Live support chat rules: payload validation, public payloads, typing and presence state."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tiffin_rt.core.errors import ClientError
from tiffin_rt.core.events import iso_utc
from tiffin_rt.core.parse import InvalidNumber, parse_int, parse_optional_int
from tiffin_rt.core.policy import is_staff
from tiffin_rt.core.storable import unstorable

# Event-log kinds written by the support chat; the support sink delivers exactly these.
# Typing and presence are never logged: they cross nodes through the cluster bus.
SUPPORT_MESSAGE = "support_message"
SUPPORT_READ = "support_read"
SUPPORT_OPENED = "support_conversation_opened"
SUPPORT_CLOSED = "support_conversation_closed"
SUPPORT_KINDS = frozenset({SUPPORT_MESSAGE, SUPPORT_READ, SUPPORT_OPENED, SUPPORT_CLOSED})

# Every connected support agent is in this room: conversationOpened goes there. It is also
# the cluster bus's presence topic of the agents online.
AGENTS_ROOM = "support-agents"

MAX_ID = 2**63 - 1
MAX_CLIENT_MESSAGE_ID = 100
MAX_ORDER_ID = 120


def room_for_conversation(conversation_id: int) -> str:
    return f"conversation-{conversation_id}"


def is_agent(role: str) -> bool:
    """Support staff answer conversations; every other role starts its own."""
    return is_staff(role)


class ChatError(ClientError):
    """A refused chat request."""


def forbidden(conversation_id: int) -> ChatError:
    """The same answer for someone else's conversation and a missing one: nothing leaks."""
    return ChatError("forbidden", f"you may not access conversation {conversation_id}")


@dataclass(frozen=True, slots=True)
class Limits:
    max_text: int
    max_subject: int
    page_size: int
    max_page_size: int


@dataclass(frozen=True, slots=True)
class StartRequest:
    subject: str
    order_id: str | None


@dataclass(frozen=True, slots=True)
class MessageRequest:
    conversation_id: int
    text: str
    client_message_id: str


@dataclass(frozen=True, slots=True)
class TypingRequest:
    conversation_id: int
    is_typing: bool


@dataclass(frozen=True, slots=True)
class ReadRequest:
    conversation_id: int
    message_id: int


@dataclass(frozen=True, slots=True)
class HistoryRequest:
    conversation_id: int
    before: int | None
    after: int | None
    limit: int


def _object(data: object, shape: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ChatError("invalid_payload", f"expected an object {shape}")
    return data


def _storable(value: str, name: str) -> str:
    """Refused here, as the client's fault, rather than by the database as an outage."""
    reason = unstorable(value)
    if reason is not None:
        raise ChatError("invalid_payload", f"{name} {reason}")
    return value


def _id(value: object, name: str, *, required: bool = True) -> int | None:
    if value is None and not required:
        return None
    try:
        return parse_int(value, name, low=1, high=MAX_ID)
    except InvalidNumber as exc:
        raise ChatError("invalid_payload", f"{name} must be a positive integer id: {exc}") from None


def conversation_id_of(data: object) -> int:
    doc = _object(data, "{conversationId}")
    value = _id(doc.get("conversationId"), "conversationId")
    assert value is not None
    return value


def parse_start(data: object, limits: Limits) -> StartRequest:
    doc = _object(data, "{subject, orderId?}")
    subject = doc.get("subject")
    if not isinstance(subject, str) or not subject.strip():
        raise ChatError("invalid_payload", "subject must be a non-empty string")
    if len(subject) > limits.max_subject:
        raise ChatError("too_long", f"subject is longer than {limits.max_subject} characters")
    _storable(subject, "subject")
    order = doc.get("orderId")
    if isinstance(order, bool) or not isinstance(order, str | int | None):
        raise ChatError("invalid_payload", "orderId must be a string or number")
    order_id = None if order in (None, "") else str(order)
    if order_id is not None and len(order_id) > MAX_ORDER_ID:
        raise ChatError("invalid_payload", f"orderId is longer than {MAX_ORDER_ID} characters")
    if order_id is not None:
        _storable(order_id, "orderId")
    return StartRequest(subject=subject.strip(), order_id=order_id)


def parse_message(data: object, limits: Limits) -> MessageRequest:
    conversation_id = conversation_id_of(data)
    doc = _object(data, "{conversationId, text, clientMessageId}")
    text = doc.get("text")
    if not isinstance(text, str):
        raise ChatError("invalid_payload", "text must be a string")
    if not text.strip():
        raise ChatError("empty_text", "text is empty")
    if len(text) > limits.max_text:
        raise ChatError("too_long", f"text is longer than {limits.max_text} characters")
    _storable(text, "text")
    client_id = doc.get("clientMessageId")
    if not isinstance(client_id, str) or not 0 < len(client_id) <= MAX_CLIENT_MESSAGE_ID:
        raise ChatError(
            "invalid_payload",
            f"clientMessageId must be a string of 1 to {MAX_CLIENT_MESSAGE_ID} characters, "
            "unique per message and the same on a resend",
        )
    _storable(client_id, "clientMessageId")
    return MessageRequest(conversation_id, text, client_id)


def parse_typing(data: object) -> TypingRequest:
    conversation_id = conversation_id_of(data)
    is_typing = _object(data, "{conversationId, isTyping}").get("isTyping")
    if not isinstance(is_typing, bool):
        raise ChatError("invalid_payload", "isTyping must be true or false")
    return TypingRequest(conversation_id, is_typing)


def parse_read(data: object) -> ReadRequest:
    conversation_id = conversation_id_of(data)
    message_id = _id(_object(data, "{conversationId, messageId}").get("messageId"), "messageId")
    assert message_id is not None
    return ReadRequest(conversation_id, message_id)


def parse_history(data: object, limits: Limits) -> HistoryRequest:
    conversation_id = conversation_id_of(data)
    doc = _object(data, "{conversationId, before?, after?, limit?}")
    return history_request(
        conversation_id, doc.get("before"), doc.get("after"), doc.get("limit"), limits
    )


def history_request(
    conversation_id: int, before: object, after: object, limit: object, limits: Limits
) -> HistoryRequest:
    """Shared by the acknowledged event and REST (which passes query-string values)."""
    before_id = _id(before, "before", required=False)
    after_id = _id(after, "after", required=False)
    if before_id is not None and after_id is not None:
        raise ChatError("invalid_payload", "give before or after, not both")
    try:
        wanted = parse_optional_int(limit, "limit", low=1)
    except InvalidNumber as exc:
        raise ChatError("invalid_payload", f"limit must be a positive integer: {exc}") from None
    size = limits.page_size if wanted is None else min(wanted, limits.max_page_size)
    return HistoryRequest(conversation_id, before_id, after_id, size)


@dataclass(frozen=True, slots=True)
class Conversation:
    id: int
    customer_id: str
    subject: str
    order_id: str | None
    status: str
    created_at: datetime
    closed_at: datetime | None = None
    closed_by: str | None = None

    @property
    def is_open(self) -> bool:
        return self.status == "open"

    def visible_to(self, user_id: str, role: str) -> bool:
        return is_agent(role) or self.customer_id == user_id

    def payload(self) -> dict[str, Any]:
        """The public `conversation` object."""
        doc: dict[str, Any] = {
            "id": self.id,
            "subject": self.subject,
            "orderId": self.order_id,
            "customerId": self.customer_id,
            "status": self.status,
            "createdAt": iso_utc(self.created_at),
        }
        if self.closed_at is not None:
            doc["closedAt"] = iso_utc(self.closed_at)
            doc["closedBy"] = self.closed_by
        return doc


@dataclass(frozen=True, slots=True)
class Message:
    id: int
    conversation_id: int
    sender_id: str
    sender_role: str
    text: str
    client_message_id: str
    created_at: datetime

    def payload(self) -> dict[str, Any]:
        """The public `message` object; text is plain text, pages must escape it."""
        return {
            "id": self.id,
            "conversationId": self.conversation_id,
            "senderId": self.sender_id,
            "senderRole": self.sender_role,
            "text": self.text,
            "createdAt": iso_utc(self.created_at),
            "clientMessageId": self.client_message_id,
        }


TypingKey = tuple[str, int]  # (connection id, conversation id)


class TypingTracker:
    """Who is typing where: forwards changes, throttles repeats, expires the silent."""

    def __init__(self, *, throttle: float, timeout: float) -> None:
        self._throttle = throttle
        self._timeout = timeout
        self._forwarded: dict[TypingKey, float] = {}
        self._seen: dict[TypingKey, float] = {}

    def update(self, key: TypingKey, is_typing: bool, now: float) -> bool:
        """Record a typing event; True when it should be forwarded to the others."""
        if not is_typing:
            self._seen.pop(key, None)
            return self._forwarded.pop(key, None) is not None
        self._seen[key] = now
        last = self._forwarded.get(key)
        if last is not None and now - last < self._throttle:
            return False
        self._forwarded[key] = now
        return True

    def expired(self, now: float) -> list[TypingKey]:
        """Keys silent for longer than the timeout; they are forgotten and must be cleared."""
        stale = [key for key, seen in self._seen.items() if now - seen >= self._timeout]
        for key in stale:
            self._seen.pop(key, None)
            self._forwarded.pop(key, None)
        return stale

    def forget_connection(self, sid: str) -> list[int]:
        """A connection went away: the conversations where it was typing."""
        keys = [key for key in self._forwarded if key[0] == sid]
        for key in keys:
            self._seen.pop(key, None)
            self._forwarded.pop(key, None)
        return [key[1] for key in keys]


class AgentPresence:
    """Connected support agents: a person with several tabs counts once."""

    def __init__(self) -> None:
        self._connections: Counter[str] = Counter()

    def add(self, user_id: str) -> bool:
        """True when the number of agents online changed."""
        self._connections[user_id] += 1
        return self._connections[user_id] == 1

    def remove(self, user_id: str) -> bool:
        if self._connections[user_id] <= 0:
            return False
        self._connections[user_id] -= 1
        if self._connections[user_id] == 0:
            del self._connections[user_id]
            return True
        return False

    def users(self) -> list[str]:
        return list(self._connections)

    def __len__(self) -> int:
        return len(self._connections)
