"""Real python-socketio clients on /support, for the support chat tests."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import socketio

from tests.helpers import Received, sio_client, token
from tiffin_rt.config import Settings

NAMESPACE = "/support"
EVENTS = (
    "message",
    "typing",
    "read",
    "conversationOpened",
    "conversationClosed",
    "presence",
    "tokenExpiring",
    "error",
)

_client_ids = itertools.count(1)


@dataclass
class Person:
    """One connected person: their client, what it received, and acked calls on /support."""

    user_id: str
    client: socketio.AsyncClient
    received: Received

    async def call(self, event: str, data: Any = None) -> dict[str, Any]:
        ack: dict[str, Any] = await self.client.call(event, data, namespace=NAMESPACE, timeout=10)
        return ack

    async def send(self, conversation_id: int, text: str, client_id: str | None = None) -> Any:
        return await self.call(
            "message",
            {
                "conversationId": conversation_id,
                "text": text,
                "clientMessageId": client_id or f"c{next(_client_ids)}",
            },
        )

    async def start(self, subject: str = "Where is my lunch?", **fields: Any) -> dict[str, Any]:
        ack = await self.call("startConversation", {"subject": subject, **fields})
        assert ack["ok"], ack
        conversation: dict[str, Any] = ack["conversation"]
        return conversation

    async def close(self) -> None:
        await self.client.disconnect()


async def connect(
    url: str, settings: Settings, user_id: str, role: str = "customer", *, ttl: int = 600
) -> Person:
    client, received = await sio_client(
        url, token(settings, user_id, role, ttl=ttl), namespace=NAMESPACE, events=EVENTS
    )
    return Person(user_id, client, received)


@asynccontextmanager
async def connected(
    url: str, settings: Settings, *customers: str, support: Sequence[str] = ()
) -> AsyncIterator[list[Person]]:
    """Customers, then support agents, connected in that order; all closed on the way out."""
    people: list[Person] = []
    try:
        for user_id in customers:
            people.append(await connect(url, settings, user_id))
        for user_id in support:
            people.append(await connect(url, settings, user_id, "support"))
        yield people
    finally:
        for person in people:
            await person.close()
