"""The /support namespace (live support chat) and the sink that delivers its log events."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Sequence
from typing import Any

import socketio

from tiffin_rt.access import RoomAccess
from tiffin_rt.auth import Identity, TokenVerifier
from tiffin_rt.cluster import ClusterBus
from tiffin_rt.config import SupportSettings
from tiffin_rt.core.chat import (
    AGENTS_ROOM,
    SUPPORT_CLOSED,
    SUPPORT_KINDS,
    SUPPORT_MESSAGE,
    SUPPORT_OPENED,
    SUPPORT_READ,
    AgentPresence,
    ChatError,
    Limits,
    TypingTracker,
    conversation_id_of,
    is_agent,
    parse_history,
    parse_message,
    parse_read,
    parse_start,
    parse_typing,
    room_for_conversation,
)
from tiffin_rt.core.errors import ack_ok
from tiffin_rt.core.events import Event, iso_utc
from tiffin_rt.core.rooms import room_for_order, room_for_user
from tiffin_rt.core.router import send_in_order
from tiffin_rt.db.chat_store import SupportStore, Who
from tiffin_rt.ratelimit import RateLimits
from tiffin_rt.transports.socketio.fanout import RoomFanout
from tiffin_rt.transports.socketio.membership import enter_if_connected, gone
from tiffin_rt.transports.socketio.secure import SecureNamespace

log = logging.getLogger(__name__)

NAMESPACE = "/support"


def chat_limits(settings: SupportSettings) -> Limits:
    return Limits(
        max_text=settings.max_message_length,
        max_subject=settings.max_subject_length,
        page_size=min(settings.history_page_size, settings.history_max_page_size),
        max_page_size=settings.history_max_page_size,
    )


class Presence:
    """How many support agents are online across every node, and telling /support about it.

    Each node tells the others its own agents through the cluster bus; a node that dies takes
    its agents with it after `cluster.node_timeout`."""

    def __init__(self, sio: socketio.AsyncServer, bus: ClusterBus) -> None:
        self._sio = sio
        self._bus = bus
        self._local = AgentPresence()
        self.agents_online = 0

    def payload(self) -> dict[str, Any]:
        return {"agentsOnline": self.agents_online, "online": self.agents_online > 0}

    async def arrived(self, user_id: str) -> None:
        if self._local.add(user_id):
            self._bus.set_present(AGENTS_ROOM, self._local.users())
            await self.recount()

    async def left(self, user_id: str) -> None:
        if self._local.remove(user_id):
            self._bus.set_present(AGENTS_ROOM, self._local.users())
            await self.recount()

    async def recount(self) -> None:
        """Every /support connection of this node hears about a change of the cluster's count."""
        count = len(self._bus.present(AGENTS_ROOM))
        if count != self.agents_online:
            self.agents_online = count
            await self._sio.emit("presence", self.payload(), namespace=NAMESPACE)


class SupportNamespace(SecureNamespace):
    """The chat events; authentication, rate limits and token expiry come from SecureNamespace."""

    def __init__(
        self,
        *,
        verifier: TokenVerifier,
        limits: RateLimits,
        store: SupportStore,
        access: RoomAccess,
        presence: Presence,
        bus: ClusterBus,
        settings: SupportSettings,
    ) -> None:
        super().__init__(NAMESPACE, verifier=verifier, limits=limits)
        self._store = store
        self._bus = bus
        self._access = access
        self._presence = presence
        self._chat = chat_limits(settings)
        self._typing = TypingTracker(
            throttle=settings.typing_throttle, timeout=settings.typing_timeout
        )

    # -- connection lifecycle ------------------------------------------------------------

    async def connected(self, sid: str, identity: Identity) -> None:
        await self.enter_room(sid, room_for_user(identity.user_id))
        if is_agent(identity.role):
            await self.enter_room(sid, AGENTS_ROOM)
            self._spawn(self._presence.arrived(identity.user_id))
        # Sent once the connection is established, so the client can show it at once.
        self._spawn(self.emit("presence", self._presence.payload(), to=sid))

    async def disconnected(self, sid: str, identity: Identity) -> None:
        who = Who(identity.user_id, identity.role, sid)
        for conversation_id in self._typing.forget_connection(sid):
            self._spawn(self._typing_changed(who, conversation_id, False))
        if is_agent(identity.role):
            self._spawn(self._presence.left(identity.user_id))

    def _who(self, sid: str, identity: Identity | None = None) -> Who:
        """Take it before the handler's first await: the connection may be gone after it."""
        identity = identity or self._connections[sid].identity
        return Who(identity.user_id, identity.role, sid)

    # -- client events ---------------------------------------------------------------------

    async def on_startConversation(self, sid: str, data: Any = None) -> dict[str, Any]:
        identity = self._connections[sid].identity
        if is_agent(identity.role):
            raise ChatError("forbidden", "support agents join conversations; customers start them")
        request = parse_start(data, self._chat)
        if request.order_id is not None:
            await self._access.check(identity, room_for_order(request.order_id))
        conversation = await self._store.start(self._who(sid, identity), request)
        if not await enter_if_connected(self, sid, room_for_conversation(conversation.id)):
            return gone()
        return ack_ok(conversation=conversation.payload())

    async def on_joinConversation(self, sid: str, data: Any = None) -> dict[str, Any]:
        who = self._who(sid)
        conversation, unread = await self._store.join(who, conversation_id_of(data))
        room = room_for_conversation(conversation.id)
        if not self.takes_room_turn(sid, room, joining=True):
            return self.superseded(room)  # a leaveConversation sent after it was handled first
        if not await enter_if_connected(self, sid, room):
            return gone()
        read_by = await self._store.read_positions(who, conversation.id)
        return ack_ok(conversation=conversation.payload(), unreadCount=unread, readBy=read_by)

    async def on_leaveConversation(self, sid: str, data: Any = None) -> dict[str, Any]:
        conversation_id = conversation_id_of(data)
        room = room_for_conversation(conversation_id)
        if self.takes_room_turn(sid, room, joining=False):
            await self.leave_room(sid, room)
        return ack_ok(conversationId=conversation_id)

    async def on_closeConversation(self, sid: str, data: Any = None) -> dict[str, Any]:
        conversation, _changed = await self._store.close(self._who(sid), conversation_id_of(data))
        return ack_ok(conversation=conversation.payload())

    async def on_message(self, sid: str, data: Any = None) -> dict[str, Any]:
        request = parse_message(data, self._chat)
        who = self._who(sid)
        message, duplicate = await self._store.post(who, request)
        if self._typing.update((sid, request.conversation_id), False, time.monotonic()):
            await self._typing_changed(who, request.conversation_id, False)
        return ack_ok(message=message.payload(), duplicate=duplicate)

    async def on_typing(self, sid: str, data: Any = None) -> dict[str, Any]:
        request = parse_typing(data)
        key = (sid, request.conversation_id)
        if self._typing.update(key, request.is_typing, time.monotonic()):
            who = self._who(sid)
            try:
                await self._store.check_typing(who, request.conversation_id, request.is_typing)
            except ChatError:
                self._typing.update(key, False, time.monotonic())
                raise
            await self._typing_changed(who, request.conversation_id, request.is_typing)
        return ack_ok()

    async def on_read(self, sid: str, data: Any = None) -> dict[str, Any]:
        request = parse_read(data)
        position = await self._store.read(self._who(sid), request)
        return ack_ok(
            conversationId=request.conversation_id,
            messageId=position.message_id,
            readAt=iso_utc(position.read_at),
            unreadCount=position.unread,
        )

    async def on_history(self, sid: str, data: Any = None) -> dict[str, Any]:
        request = parse_history(data, self._chat)
        messages, has_more = await self._store.history(self._who(sid), request)
        return ack_ok(
            conversationId=request.conversation_id,
            messages=[m.payload() for m in messages],
            hasMore=has_more,
        )

    async def on_listConversations(self, sid: str, data: Any = None) -> dict[str, Any]:
        status = data.get("status", "open") if isinstance(data, dict) else "open"
        if status not in ("open", "closed", "all"):
            raise ChatError("invalid_payload", "status must be open, closed or all")
        summaries = await self._store.summaries(self._who(sid), status)
        return ack_ok(conversations=[s.payload() for s in summaries])

    async def on_presence(self, sid: str, data: Any = None) -> dict[str, Any]:
        return ack_ok(**self._presence.payload())

    # -- background work -------------------------------------------------------------------

    async def expire_typing(self) -> None:
        """Clear typing indicators of everyone silent for longer than the timeout."""
        for sid, conversation_id in self._typing.expired(time.monotonic()):
            identity = self.identity(sid)
            if identity is None:
                continue
            who = Who(identity.user_id, identity.role, sid)
            await self._typing_changed(who, conversation_id, False)

    async def _typing_changed(self, who: Who, conversation_id: int, is_typing: bool) -> None:
        """To the conversation's connections on every node, except the typing one."""
        await self._bus.emit(
            "typing",
            {"conversationId": conversation_id, "userId": who.user_id, "isTyping": is_typing},
            to=[room_for_conversation(conversation_id)],
            namespace=NAMESPACE,
            skip_sid=who.origin,
        )


class SupportSink:
    """Sends support events from the log to the connections of this process: queued for every
    connection before `deliver` returns (RoomFanout.publish), as the /notifications sink does,
    so support events take the same path; only what the fanout cannot send at once (binary
    attachments, python-engineio's unbounded socket) is awaited, in order."""

    def __init__(self, sio: socketio.AsyncServer) -> None:
        self._sio = sio

    def deliver(self, events: Sequence[Event]) -> Awaitable[None] | None:
        return send_in_order(events, self._send)

    def _send(self, event: Event) -> Awaitable[None] | None:
        if event.kind not in SUPPORT_KINDS:
            return None
        name, data = self._message(event)
        if data is None:
            return None
        fanout: RoomFanout = self._sio.manager
        origin = event.payload.get("origin")  # the sender's connection, if on this node
        sender = fanout.client(origin, NAMESPACE) if isinstance(origin, str) else None
        skip = (sender,) if sender is not None else ()
        return fanout.publish(name, data, NAMESPACE, event.rooms, skip)

    def _message(self, event: Event) -> tuple[str, dict[str, Any] | None]:
        p = event.payload
        if event.kind == SUPPORT_MESSAGE:
            return "message", p.get("message")
        if event.kind == SUPPORT_READ:
            return "read", p.get("read")
        conversation = p.get("conversation")
        if not isinstance(conversation, dict):
            return "", None
        if event.kind == SUPPORT_OPENED:
            return "conversationOpened", conversation
        if event.kind == SUPPORT_CLOSED:
            return "conversationClosed", {
                "conversationId": conversation.get("id"),
                "closedBy": conversation.get("closedBy"),
                "closedAt": conversation.get("closedAt"),
                "conversation": conversation,
            }
        return "", None
