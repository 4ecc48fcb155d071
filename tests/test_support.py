"""Live support chat on /support: conversations and messages between customers and an agent."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
import socketio
from aiohttp.test_utils import TestServer

from tests.conftest import StartServer
from tests.helpers import base_url, marker_arrived
from tests.support_clients import NAMESPACE, Person, connect, connected
from tiffin_rt.config import Settings


@pytest.fixture
async def people(
    server: TestServer, url: str, settings: Settings
) -> AsyncIterator[tuple[Person, Person, Person]]:
    """Two customers (alice, bob) and a support agent (sam), connected to /support."""
    async with connected(url, settings, "alice", "bob", support=["sam"]) as (alice, bob, sam):
        yield alice, bob, sam


@pytest.fixture
async def cid(people: tuple[Person, Person, Person]) -> int:
    """A conversation alice opened and sam joined."""
    alice, _bob, sam = people
    conversation_id: int = (await alice.start())["id"]
    await sam.call("joinConversation", {"conversationId": conversation_id})
    return conversation_id


async def count_messages(db: asyncpg.Connection) -> int:
    return int(await db.fetchval("SELECT count(*) FROM tiffin_rt.support_messages"))


async def test_a_conversation_reaches_the_agent_and_messages_arrive_in_order(
    people: tuple[Person, Person, Person], db: asyncpg.Connection
) -> None:
    alice, bob, sam = people
    conversation = await alice.start("Missing naan", orderId=1)
    assert conversation["subject"] == "Missing naan"
    assert conversation["orderId"] == "1"
    assert conversation["customerId"] == "alice"
    assert conversation["status"] == "open"
    assert conversation["createdAt"].endswith("Z")
    assert isinstance(conversation["id"], int)

    [opened] = await sam.received.wait_for("conversationOpened")
    assert opened == conversation
    joined = await sam.call("joinConversation", {"conversationId": conversation["id"]})
    assert joined == {"ok": True, "conversation": conversation, "unreadCount": 0, "readBy": []}

    texts = [f"message {i}" for i in range(5)]
    acks = [await alice.send(conversation["id"], t, f"alice-{i}") for i, t in enumerate(texts)]
    assert all(ack["ok"] and ack["duplicate"] is False for ack in acks)
    delivered = await sam.received.wait_for("message", 5)
    assert [m["text"] for m in delivered] == texts
    assert delivered == [ack["message"] for ack in acks]
    first = delivered[0]
    assert first["conversationId"] == conversation["id"]
    assert first["senderId"] == "alice"
    assert first["senderRole"] == "customer"
    assert first["clientMessageId"] == "alice-0"
    assert first["createdAt"].endswith("Z")
    assert [m["id"] for m in delivered] == sorted(m["id"] for m in delivered)

    reply = await sam.send(conversation["id"], "Sorry! A naan is on its way.")
    [answer] = await alice.received.wait_for("message")
    assert answer == reply["message"]
    assert answer["senderRole"] == "support"

    await marker_arrived(db, "alice", alice.received, namespace=NAMESPACE)
    await marker_arrived(db, "bob", bob.received, namespace=NAMESPACE)
    assert alice.received.of("message") == [answer]  # her own messages are not echoed back
    assert bob.received.of("message") == []
    assert bob.received.of("conversationOpened") == []


async def test_html_is_stored_and_sent_as_plain_text(
    people: tuple[Person, Person, Person], cid: int, db: asyncpg.Connection
) -> None:
    alice, _bob, sam = people
    html = "<script>alert('hi')</script> <b>5 & 6</b> 食"
    ack = await alice.send(cid, html)
    assert ack["message"]["text"] == html
    [received] = await sam.received.wait_for("message")
    assert received["text"] == html
    assert await db.fetchval("SELECT body FROM tiffin_rt.support_messages") == html


async def test_a_resend_with_the_same_client_message_id_is_stored_and_delivered_once(
    people: tuple[Person, Person, Person], cid: int, db: asyncpg.Connection
) -> None:
    alice, _bob, sam = people
    first = await alice.send(cid, "Hello?", "retry-me")
    again = await alice.send(cid, "Hello?", "retry-me")
    assert first["duplicate"] is False
    assert again == {"ok": True, "message": first["message"], "duplicate": True}
    await alice.send(cid, "Anyone there?", "next")
    delivered = await sam.received.wait_for("message", 2)
    assert [m["text"] for m in delivered] == ["Hello?", "Anyone there?"]
    await marker_arrived(db, "sam", sam.received, namespace=NAMESPACE)
    assert len(sam.received.of("message")) == 2
    assert await count_messages(db) == 2


async def test_someone_elses_or_a_missing_conversation_is_forbidden_alike(
    people: tuple[Person, Person, Person], db: asyncpg.Connection
) -> None:
    alice, bob, _sam = people
    conversation = await alice.start()
    await alice.send(conversation["id"], "private")
    missing = conversation["id"] + 1000
    for conversation_id in (conversation["id"], missing):
        for event, extra in (
            ("joinConversation", {}),
            ("message", {"text": "let me in", "clientMessageId": "x"}),
            ("typing", {"isTyping": True}),
            ("read", {"messageId": 1}),
            ("history", {}),
            ("closeConversation", {}),
        ):
            ack = await bob.call(event, {"conversationId": conversation_id, **extra})
            assert ack == {
                "ok": False,
                "error": {
                    "code": "forbidden",
                    "message": f"you may not access conversation {conversation_id}",
                },
            }, event
    await marker_arrived(db, "bob", bob.received, namespace=NAMESPACE)
    assert bob.received.of("message") == []
    assert await count_messages(db) == 1


async def test_a_customer_may_not_open_a_conversation_about_someone_elses_order(
    people: tuple[Person, Person, Person], db: asyncpg.Connection
) -> None:
    _alice, bob, sam = people
    ack = await bob.call("startConversation", {"subject": "Not mine", "orderId": 1})
    assert ack["ok"] is False
    assert ack["error"]["code"] == "forbidden"
    agent = await sam.call("startConversation", {"subject": "Agents answer"})
    assert agent["error"]["code"] == "forbidden"
    assert await db.fetchval("SELECT count(*) FROM tiffin_rt.support_conversations") == 0


async def test_bad_input_is_refused_clearly_and_nothing_is_stored(
    start_server: StartServer, settings: Settings, db: asyncpg.Connection
) -> None:
    server = await start_server(support={"max_message_length": 20})
    url = base_url(server)
    alice = await connect(url, settings, "alice")
    try:
        conversation = await alice.start()
        cid = conversation["id"]

        def msg(**fields: object) -> dict[str, object]:
            return {"conversationId": cid, "text": "hi", "clientMessageId": "a", **fields}

        cases: list[tuple[str, object, str]] = [
            ("message", msg(text=""), "empty_text"),
            ("message", msg(text=" \n"), "empty_text"),
            ("message", msg(text="x" * 21), "too_long"),
            ("message", msg(clientMessageId=None), "invalid_payload"),
            ("message", msg(clientMessageId="x" * 101), "invalid_payload"),
            ("message", msg(text=5), "invalid_payload"),
            ("message", msg(conversationId="abc"), "invalid_payload"),
            ("message", msg(conversationId=True), "invalid_payload"),
            ("message", "just a string", "invalid_payload"),
            ("message", None, "invalid_payload"),
            ("typing", {"conversationId": cid, "isTyping": "yes"}, "invalid_payload"),
            ("read", {"conversationId": cid, "messageId": -1}, "invalid_payload"),
            ("history", {"conversationId": cid, "before": 1, "after": 1}, "invalid_payload"),
            ("history", {"conversationId": cid, "limit": 0}, "invalid_payload"),
            ("startConversation", {"subject": ""}, "invalid_payload"),
            ("startConversation", {"subject": "x" * 201}, "too_long"),
            ("startConversation", {"subject": "ok", "orderId": {"a": 1}}, "invalid_payload"),
            ("noSuchEvent", {}, "unknown_event"),
        ]
        for event, data, code in cases:
            ack = await alice.call(event, data)
            assert ack["ok"] is False, (event, data)
            assert ack["error"]["code"] == code, (event, data, ack)
            assert ack["error"]["message"], (event, data)
        exactly = await alice.send(cid, "x" * 20)
        assert exactly["ok"] is True

        closed = await alice.call("closeConversation", {"conversationId": cid})
        assert closed["ok"] is True
        assert closed["conversation"]["status"] == "closed"
        late = await alice.send(cid, "one more thing")
        assert late["error"] == {
            "code": "conversation_closed",
            "message": f"conversation {cid} is closed",
        }
        assert await count_messages(db) == 1
    finally:
        await alice.close()


async def test_a_connection_without_a_valid_token_is_refused(url: str) -> None:
    client = socketio.AsyncClient(reconnection=False)
    refusals: list[object] = []
    client.on("connect_error", refusals.append, namespace=NAMESPACE)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(
            url, namespaces=[NAMESPACE], auth={"token": "nope"}, transports=["websocket"]
        )
    [refusal] = refusals
    assert isinstance(refusal, dict)
    assert refusal["data"]["code"] == "unauthorized"
    assert "invalid token" in refusal["data"]["message"]


async def test_rate_limits_and_token_expiry_apply_on_support(
    start_server: StartServer, settings: Settings, db: asyncpg.Connection
) -> None:
    server = await start_server(
        limits={"event_overrides": {"message": "3/minute"}}, auth={"expiry_warning": 0.5}
    )
    url = base_url(server)
    alice = await connect(url, settings, "alice")
    short = await connect(url, settings, "sam", "support", ttl=1)
    try:
        cid = (await alice.start())["id"]
        acks = [await alice.send(cid, f"#{i}") for i in range(4)]
        assert [a["ok"] for a in acks] == [True, True, True, False]
        assert acks[-1]["error"]["code"] == "rate_limited"
        assert await count_messages(db) == 3

        [expiring] = await short.received.wait_for("tokenExpiring", timeout=5)
        assert expiring["expiresIn"] <= 1
        [ended] = await short.received.wait_for("error", timeout=5)
        assert ended["code"] == "token_expired"
    finally:
        await alice.close()
        await short.close()


async def test_a_dropped_database_connection_is_answered_and_a_resend_stores_once(
    people: tuple[Person, Person, Person], cid: int, db: asyncpg.Connection
) -> None:
    alice, _bob, sam = people
    await db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE application_name = 'tiffin_rt' AND datname = current_database()"
    )
    answers = []
    for _ in range(5):
        ack = await alice.send(cid, "still there?", "after-drop")
        answers.append(ack)
        if ack["ok"]:
            break
    assert answers[-1]["ok"] is True
    for refused in answers[:-1]:
        assert refused["error"]["code"] == "unavailable"
    [delivered] = await sam.received.wait_for("message")
    assert delivered == answers[-1]["message"]
    await marker_arrived(db, "sam", sam.received, namespace=NAMESPACE)
    assert len(sam.received.of("message")) == 1
    assert await count_messages(db) == 1
