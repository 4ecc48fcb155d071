"""Support chat: typing, read receipts and unread counts, history pages, presence."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import asyncpg
from aiohttp.test_utils import TestServer

from tests.brokers import REDIS_URL, cluster_name, needs
from tests.conftest import StartServer
from tests.helpers import base_url, eventually, marker_arrived, token
from tests.support_clients import NAMESPACE, Person, connect, connected
from tiffin_rt.config import Settings


async def get_json(url: str, settings: Settings, user: str, role: str = "customer") -> Any:
    headers = {"Authorization": f"Bearer {token(settings, user, role)}"}
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as response:
        return response.status, await response.json()


async def test_typing_reaches_the_others_is_throttled_and_clears_by_itself(
    start_server: StartServer, settings: Settings
) -> None:
    server = await start_server(support={"typing_timeout": 0.6, "typing_throttle": 10})
    url = base_url(server)
    async with connected(url, settings, "alice", support=["sam", "kim"]) as (alice, sam, kim):
        conversation = await alice.start()
        cid = conversation["id"]
        await sam.call("joinConversation", {"conversationId": cid})
        await kim.call("joinConversation", {"conversationId": cid})

        for _ in range(3):
            assert await alice.call("typing", {"conversationId": cid, "isTyping": True}) == {
                "ok": True
            }
        [typing] = await sam.received.wait_for("typing")
        assert typing == {"conversationId": cid, "userId": "alice", "isTyping": True}
        # Nobody else typed, and alice does not hear her own indicator.
        cleared = await sam.received.wait_for("typing", 2, timeout=3)
        assert cleared[1] == {"conversationId": cid, "userId": "alice", "isTyping": False}
        assert alice.received.of("typing") == []

        # A message ends typing at once; so does a disconnect.
        await sam.call("typing", {"conversationId": cid, "isTyping": True})
        await alice.received.wait_for("typing", 1)
        await sam.send(cid, "Checking with the kitchen")
        on_alice = await alice.received.wait_for("typing", 2)
        assert [t["isTyping"] for t in on_alice] == [True, False]
        await alice.call("typing", {"conversationId": cid, "isTyping": True})
        await sam.received.wait_for("typing", 3)
        await alice.close()
        after_disconnect = await sam.received.wait_for("typing", 4)
        assert after_disconnect[-1] == {"conversationId": cid, "userId": "alice", "isTyping": False}
        # The marker: kim types and falls silent. Her clear comes from the timeout sweep that
        # would repeat alice's, and after it (alice's deadline came first).
        await kim.call("typing", {"conversationId": cid, "isTyping": True})
        typing = await sam.received.wait_for("typing", 6, timeout=5)
        assert typing[4:] == [  # nothing repeated for alice after the timeout
            {"conversationId": cid, "userId": "kim", "isTyping": True},
            {"conversationId": cid, "userId": "kim", "isTyping": False},
        ]


async def test_read_receipts_and_unread_counts(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    async with connected(url, settings, "alice", "bob", support=["sam"]) as (alice, bob, sam):
        conversation = await alice.start()
        cid = conversation["id"]
        sent = [(await alice.send(cid, f"line {i}"))["message"] for i in range(3)]
        joined = await sam.call("joinConversation", {"conversationId": cid})
        assert joined["unreadCount"] == 3

        ack = await sam.call("read", {"conversationId": cid, "messageId": sent[1]["id"]})
        assert ack["ok"] is True
        assert ack["messageId"] == sent[1]["id"]
        assert ack["unreadCount"] == 1
        [receipt] = await alice.received.wait_for("read")
        assert receipt == {
            "conversationId": cid,
            "userId": "sam",
            "messageId": sent[1]["id"],
            "readAt": ack["readAt"],
        }
        # A device that (re)joins learns how far the others have read.
        rejoined = await alice.call("joinConversation", {"conversationId": cid})
        assert rejoined["readBy"] == [receipt]
        # Reading an older message does not move the position back, and sends nothing.
        back = await sam.call("read", {"conversationId": cid, "messageId": sent[0]["id"]})
        assert back["messageId"] == sent[1]["id"]
        assert back["unreadCount"] == 1

        reply = (await sam.send(cid, "On it"))["message"]
        await alice.received.wait_for("message")
        status, listed = await get_json(f"{url}/api/support/conversations", settings, "alice")
        assert status == 200
        [mine] = listed["conversations"]
        assert mine["id"] == cid
        assert mine["unreadCount"] == 1
        assert mine["lastMessageAt"] == reply["createdAt"]
        # Replying moves the agent's own position to the reply: nothing unread for sam now.
        agents_view = await sam.call("listConversations", {})
        assert [(c["id"], c["unreadCount"]) for c in agents_view["conversations"]] == [(cid, 0)]
        status, bobs = await get_json(f"{url}/api/support/conversations", settings, "bob")
        assert bobs == {"conversations": []}

        done = await alice.call("read", {"conversationId": cid, "messageId": reply["id"]})
        assert done["unreadCount"] == 0
        receipts = await sam.received.wait_for("read")
        assert receipts[-1]["userId"] == "alice"
        assert receipts[-1]["messageId"] == reply["id"]
        missing = await alice.call("read", {"conversationId": cid, "messageId": reply["id"] + 99})
        assert missing["error"]["code"] == "not_found"
        await marker_arrived(db, "alice", alice.received, namespace=NAMESPACE)
        await marker_arrived(db, "bob", bob.received, namespace=NAMESPACE)
        assert len(alice.received.of("read")) == 1
        assert bob.received.of("read") == []


async def test_history_pages_through_the_event_and_rest(
    server: TestServer, url: str, settings: Settings
) -> None:
    async with connected(url, settings, "alice", support=["sam"]) as (alice, sam):
        cid = (await alice.start())["id"]
        await sam.call("joinConversation", {"conversationId": cid})
        ids = []
        for i in range(7):
            sender = alice if i % 2 == 0 else sam
            ids.append((await sender.send(cid, f"#{i}"))["message"]["id"])

        def page_ids(ack: dict[str, Any]) -> list[int]:
            return [m["id"] for m in ack["messages"]]

        latest = await alice.call("history", {"conversationId": cid, "limit": 3})
        assert page_ids(latest) == ids[4:]
        assert latest["hasMore"] is True
        assert [m["text"] for m in latest["messages"]] == ["#4", "#5", "#6"]
        older = await alice.call("history", {"conversationId": cid, "before": ids[4], "limit": 3})
        assert (page_ids(older), older["hasMore"]) == (ids[1:4], True)
        oldest = await alice.call("history", {"conversationId": cid, "before": ids[1], "limit": 3})
        assert (page_ids(oldest), oldest["hasMore"]) == (ids[:1], False)
        # A reconnecting client fills its gap forward from the last message it saw.
        gap = await sam.call("history", {"conversationId": cid, "after": ids[2], "limit": 3})
        assert (page_ids(gap), gap["hasMore"]) == (ids[3:6], True)

        status, body = await get_json(
            f"{url}/api/support/conversations/{cid}/messages?before={ids[4]}&limit=3",
            settings,
            "alice",
        )
        assert status == 200
        assert body == {"conversationId": cid, "messages": older["messages"], "hasMore": True}
        status, body = await get_json(
            f"{url}/api/support/conversations/{cid}/messages", settings, "sam", "support"
        )
        assert (status, [m["id"] for m in body["messages"]]) == (200, ids)
        for path, code in (
            (f"{cid}/messages", 403),
            (f"{cid + 50}/messages", 403),
            (f"{cid}/messages?limit=zero", 400),
            ("abc/messages", 400),
        ):
            status, body = await get_json(
                f"{url}/api/support/conversations/{path}", settings, "bob"
            )
            assert status == code, path
            assert set(body["error"]) == {"code", "message"}


async def test_customers_see_live_whether_support_is_online(
    server: TestServer, url: str, settings: Settings
) -> None:
    alice = await connect(url, settings, "alice")
    try:
        [first] = await alice.received.wait_for("presence")
        assert first == {"agentsOnline": 0, "online": False}
        assert await alice.call("presence") == {"ok": True, "agentsOnline": 0, "online": False}

        sam = await connect(url, settings, "sam", "support")
        sam_again = await connect(url, settings, "sam", "support")
        kim = await connect(url, settings, "kim", "support")
        await eventually(lambda: alice.received.of("presence")[-1]["agentsOnline"] == 2)
        status, body = await get_json(f"{url}/api/support/presence", settings, "alice")
        assert (status, body) == (200, {"agentsOnline": 2, "online": True})

        await sam.close()  # sam still has another tab open
        await kim.close()
        await eventually(lambda: alice.received.of("presence")[-1]["agentsOnline"] == 1)
        await sam_again.close()
        await eventually(
            lambda: (
                alice.received.of("presence")[-1]
                == {
                    "agentsOnline": 0,
                    "online": False,
                }
            )
        )
    finally:
        await alice.close()


async def test_closing_tells_the_participants_and_the_agents(
    server: TestServer, url: str, settings: Settings, db: asyncpg.Connection
) -> None:
    async with connected(url, settings, "alice", support=["sam", "kim"]) as (alice, sam, kim):
        cid = (await alice.start())["id"]
        await sam.call("joinConversation", {"conversationId": cid})
        ack = await sam.call("closeConversation", {"conversationId": cid})
        assert ack["conversation"]["status"] == "closed"
        assert ack["conversation"]["closedBy"] == "sam"
        for person in (alice, kim):
            [closed] = await person.received.wait_for("conversationClosed")
            assert closed["conversationId"] == cid
            assert closed["closedBy"] == "sam"
            assert closed["conversation"] == ack["conversation"]
        again = await alice.call("closeConversation", {"conversationId": cid})
        assert again == {"ok": True, "conversation": ack["conversation"]}
        typing = await alice.call("typing", {"conversationId": cid, "isTyping": True})
        assert typing["error"]["code"] == "conversation_closed"
        # A closed conversation can still be rejoined and read.
        rejoined = await alice.call("joinConversation", {"conversationId": cid})
        assert rejoined["conversation"]["status"] == "closed"
        open_list = await kim.call("listConversations", {"status": "open"})
        assert open_list["conversations"] == []
        closed_list = await kim.call("listConversations", {"status": "closed"})
        assert [c["id"] for c in closed_list["conversations"]] == [cid]
        await marker_arrived(db, "alice", alice.received, namespace=NAMESPACE)
        assert len(alice.received.of("conversationClosed")) == 1


@needs(REDIS_URL)
async def test_participants_on_two_server_processes_get_everything(
    start_server: StartServer, settings: Settings
) -> None:
    # Messages, receipts, openings and closings cross nodes through the log; typing and
    # presence through the broker.
    cluster = {"broker": REDIS_URL, "name": cluster_name()}
    node_a = base_url(await start_server(cluster=cluster))
    node_b = base_url(await start_server(cluster=cluster))
    alice = await connect(node_a, settings, "alice")
    sam = await connect(node_b, settings, "sam", "support")
    alice_phone = await connect(node_b, settings, "alice")
    people: list[Person] = [alice, sam, alice_phone]
    try:
        await eventually(
            lambda: alice.received.of("presence")[-1:] == [{"agentsOnline": 1, "online": True}]
        )
        conversation = await alice.start()
        cid = conversation["id"]
        [opened] = await sam.received.wait_for("conversationOpened")
        assert opened == conversation
        await sam.call("joinConversation", {"conversationId": cid})
        await alice_phone.call("joinConversation", {"conversationId": cid})

        sent = [(await alice.send(cid, f"from A {i}"))["message"] for i in range(3)]
        assert await sam.received.wait_for("message", 3) == sent
        assert await alice_phone.received.wait_for("message", 3) == sent
        read = await sam.call("read", {"conversationId": cid, "messageId": sent[-1]["id"]})
        [receipt] = await alice.received.wait_for("read")
        assert receipt["messageId"] == sent[-1]["id"]
        assert receipt["readAt"] == read["readAt"]
        await sam.call("typing", {"conversationId": cid, "isTyping": True})
        [typing] = await alice.received.wait_for("typing")
        assert typing == {"conversationId": cid, "userId": "sam", "isTyping": True}
        reply = (await sam.send(cid, "from B"))["message"]
        assert (await alice.received.wait_for("message"))[0] == reply
        assert (await alice_phone.received.wait_for("message", 4))[-1] == reply

        await alice.call("closeConversation", {"conversationId": cid})
        [closed] = await sam.received.wait_for("conversationClosed")
        assert closed["closedBy"] == "alice"

        await sam.close()
        await eventually(lambda: alice.received.of("presence")[-1]["agentsOnline"] == 0)
    finally:
        for person in people:
            await person.close()


async def test_concurrent_senders_are_seen_in_one_order_by_everyone(
    server: TestServer, url: str, settings: Settings
) -> None:
    async with connected(url, settings, "alice", support=["sam", "kim"]) as (alice, sam, kim):
        cid = (await alice.start())["id"]
        for agent in (sam, kim):
            await agent.call("joinConversation", {"conversationId": cid})
        sends = [
            person.send(cid, f"{person.user_id} {i}")
            for i in range(10)
            for person in (alice, sam, kim)
        ]
        acks = await asyncio.gather(*sends)
        assert all(ack["ok"] for ack in acks)
        stored = sorted((ack["message"] for ack in acks), key=lambda m: m["id"])
        for person in (alice, sam, kim):
            others = [m for m in stored if m["senderId"] != person.user_id]
            assert await person.received.wait_for("message", len(others)) == others
        history = await alice.call("history", {"conversationId": cid, "limit": 100})
        assert history["messages"] == stored
