"""Text PostgreSQL cannot store is the client's fault: `invalid_payload`, never `unavailable`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest
import socketio
from aiohttp.test_utils import TestServer

from tests.helpers import Received, recording_client, token
from tests.support_clients import EVENTS, NAMESPACE, Person, connect
from tiffin_rt.config import Settings
from tiffin_rt.core.chat import (
    ChatError,
    Limits,
    MessageRequest,
    StartRequest,
    parse_message,
    parse_start,
)
from tiffin_rt.db.chat_store import SupportStore, Who
from tiffin_rt.db.errors import INPUT_ERRORS

NUL = ["a\x00b", "\x00", "ends in NUL\x00"]
# A JSON "\ud800" (what a browser's JSON.stringify writes for a lone surrogate) decodes to these.
SURROGATES = ["lone \ud800 high", "lone \udfff low"]
UNSTORABLE = NUL + SURROGATES
LIMITS = Limits(max_text=100, max_subject=100, page_size=5, max_page_size=8)


async def polling_person(url: str, settings: Settings, user_id: str) -> Person:
    """A /support client on long-polling only (the other Engine.IO transport)."""
    client = socketio.AsyncClient(reconnection=False)
    received = Received()
    for name in EVENTS:
        client.on(name, (lambda n: lambda d=None: received.add(n, d))(name), namespace=NAMESPACE)
    await client.connect(
        url,
        namespaces=[NAMESPACE],
        auth={"token": token(settings, user_id)},
        transports=["polling"],
        wait_timeout=5,
    )
    return Person(user_id, client, received)


@pytest.fixture(params=["websocket", "polling"])
async def alice_and_sam(
    request: pytest.FixtureRequest, server: TestServer, url: str, settings: Settings
) -> AsyncIterator[tuple[Person, Person]]:
    if request.param == "polling":
        alice = await polling_person(url, settings, "alice")
    else:
        alice = await connect(url, settings, "alice")
    sam = await connect(url, settings, "sam", "support")
    try:
        yield alice, sam
    finally:
        await alice.close()
        await sam.close()


async def test_unstorable_message_text_and_client_ids_are_invalid_payload_and_nothing_is_sent(
    alice_and_sam: tuple[Person, Person],
    db: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    alice, sam = alice_and_sam
    conversation = await alice.start()
    await sam.call("joinConversation", {"conversationId": conversation["id"]})
    caplog.set_level(logging.WARNING)
    for bad in UNSTORABLE:
        for fields in ({"text": bad}, {"text": "fine", "clientMessageId": bad}):
            data = {"conversationId": conversation["id"], "clientMessageId": "c1", **fields}
            ack = await alice.call("message", data)
            assert ack["ok"] is False, (fields, ack)
            assert ack["error"]["code"] == "invalid_payload", (fields, ack)
    # The marker: the first message sam gets is the good one sent after every refused one.
    good = await alice.send(conversation["id"], "after the refusals", "c-good")
    assert good["ok"], good
    [delivered] = await sam.received.wait_for("message")
    assert delivered["text"] == "after the refusals"
    assert await db.fetchval("SELECT count(*) FROM tiffin_rt.support_messages") == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_unstorable_subject_and_order_id_are_invalid_payload(
    alice_and_sam: tuple[Person, Person], db: asyncpg.Connection
) -> None:
    alice, sam = alice_and_sam
    for bad in UNSTORABLE:
        for fields in ({"subject": bad}, {"subject": "ok", "orderId": f"1{bad}"}):
            ack = await alice.call("startConversation", fields)
            assert ack["ok"] is False, (fields, ack)
            assert ack["error"]["code"] == "invalid_payload", (fields, ack)
    await alice.start("the good one")
    [opened] = await sam.received.wait_for("conversationOpened")
    assert opened["subject"] == "the good one"
    assert await db.fetchval("SELECT count(*) FROM tiffin_rt.support_conversations") == 1


@pytest.mark.parametrize("bad", UNSTORABLE)
def test_the_chat_rules_refuse_every_unstorable_field(bad: str) -> None:
    for data in (
        {"conversationId": 1, "text": bad, "clientMessageId": "c"},
        {"conversationId": 1, "text": "ok", "clientMessageId": bad},
    ):
        with pytest.raises(ChatError) as refused:
            parse_message(data, LIMITS)
        assert refused.value.code == "invalid_payload"
    for data in ({"subject": bad}, {"subject": "ok", "orderId": bad}):
        with pytest.raises(ChatError) as refused:
            parse_start(data, LIMITS)
        assert refused.value.code == "invalid_payload"


async def test_support_rest_refuses_nul_in_query_values_as_bad_input(
    server: TestServer, url: str, settings: Settings
) -> None:
    headers = {"Authorization": f"Bearer {token(settings, 'alice')}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        alice, _ = await recording_client(
            url, NAMESPACE, (), {"token": token(settings, "alice")}, Received()
        )
        try:
            ack = await alice.call("startConversation", {"subject": "s"}, namespace=NAMESPACE)
        finally:
            await alice.disconnect()
        cid = ack["conversation"]["id"]
        for path, query in [
            ("/api/support/conversations", {"status": "open\x00"}),
            (f"/api/support/conversations/{cid}/messages", {"before": "1\x00"}),
            (f"/api/support/conversations/{cid}/messages", {"limit": "\x00"}),
            (f"/api/support/conversations/{cid}/messages", {"after": "\ud800"}),
        ]:
            async with http.get(f"{url}{path}", params=query) as response:
                assert response.status == 400, (path, query)
                body = await response.json()
                assert body["error"]["code"] == "invalid_payload", body


async def test_what_the_database_refuses_as_data_is_classed_as_input_not_outage(
    server: TestServer, dsn: str
) -> None:
    """The fallback behind the parser: a row PostgreSQL refuses raises an INPUT_ERRORS kind."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    assert pool is not None
    try:
        store = SupportStore(pool)
        who = Who("alice", "customer")
        for bad in UNSTORABLE:
            with pytest.raises(INPUT_ERRORS):
                await store.start(who, StartRequest(subject=bad, order_id=None))
        conversation = await store.start(who, StartRequest(subject="s", order_id=None))
        for bad in UNSTORABLE:
            with pytest.raises(INPUT_ERRORS):
                await store.post(who, MessageRequest(conversation.id, bad, "c"))
    finally:
        await pool.close()
