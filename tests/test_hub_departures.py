"""The one hub when clients leave half way: every transport (Socket.IO on WebSocket, long-polling
and polling upgraded to WebSocket, SSE) and every namespace, python-socketio's own rooms API
agreeing with the hub after each change, nothing of a gone client left in a room.

Demo orders: 1 = alice / spice-garden / rider rita; 3 = bob / green-bowl / rider ravi.
"""

from __future__ import annotations

import asyncio
import gc
import json
from typing import Any

import aiohttp
import asyncpg
import socketio
from aiohttp.test_utils import TestServer

from tests.conftest import StartServer
from tests.helpers import (
    Received,
    eventually,
    make_settings,
    marker_arrived,
    sse_events,
    token,
)
from tests.raw_engineio import ack, connect_namespace, raw_session
from tests.support_clients import connected
from tiffin_rt.config import Settings
from tiffin_rt.core.hub import SSE, Hub
from tiffin_rt.keys import HUB, SOCKETIO
from tiffin_rt.transports.socketio.client import SocketClient

NS = "/notifications"
SUPPORT = "/support"
TRANSPORTS: dict[str, list[str] | None] = {
    "websocket": ["websocket"],
    "polling": ["polling"],
    "upgrade": None,
}


async def client_on(
    url: str,
    tok: str,
    transport: str,
    namespaces: tuple[str, ...] = (NS,),
    events: tuple[str, ...] = ("orderStatusUpdate", "notification"),
    auth: dict[str, Any] | None = None,
) -> tuple[socketio.AsyncClient, Received]:
    """A python-socketio client on `transport` (upgraded to WebSocket before it returns when
    that is its path), recording `events` of its first namespace."""
    client = socketio.AsyncClient(reconnection=False)
    received = Received()
    for name in events:
        client.on(name, (lambda n: lambda data=None: received.record(n, data))(name), namespace=NS)
    await client.connect(
        url,
        namespaces=list(namespaces),
        auth={"token": tok, **(auth or {})},
        transports=TRANSPORTS[transport],
        wait_timeout=5,
    )
    if transport == "upgrade":
        await eventually(lambda: client.transport() == "websocket")
    return client, received


async def gone(client: socketio.AsyncClient) -> None:
    """Disconnect once every queued packet was sent (see tests.helpers.leave)."""
    if client.connected:
        await asyncio.wait_for(client.eio.queue.join(), 5)
    await client.disconnect()


def mirror(server: TestServer, namespace: str, room: str) -> set[str]:
    """The sids python-socketio's own rooms API says are in `room`."""
    manager = server.app[SOCKETIO].manager
    return {sid for sid, _ in manager.get_participants(namespace, room)}


def in_hub(hub: Hub, namespace: str, room: str | None) -> set[str]:
    return {getattr(c, "sid", repr(c)) for c in hub.members(namespace, room)}


def agrees(server: TestServer, namespace: str, room: str) -> set[str]:
    """The room's sids, after asserting that the hub and python-socketio's mirror agree."""
    hub = server.app[HUB]
    assert in_hub(hub, namespace, room) == mirror(server, namespace, room), room
    return mirror(server, namespace, room)


async def test_a_reassignment_evicts_the_old_rider_from_every_transport_and_nobody_else(
    start_server: StartServer, dsn: str, db: asyncpg.Connection
) -> None:
    settings = make_settings(dsn, limits={"order_cache_ttl": 60})
    server = await start_server(settings)
    hub = server.app[HUB]
    url = str(server.make_url("")).rstrip("/")
    rita_tok = token(settings, "rita", "rider")
    riders = [await client_on(url, rita_tok, path, namespaces=(NS, SUPPORT)) for path in TRANSPORTS]
    alice, to_alice = await client_on(url, token(settings, "alice"), "polling")
    headers = {"Authorization": f"Bearer {rita_tok}"}
    try:
        for client, _ in [*riders, (alice, to_alice)]:
            assert (await client.call("joinRoom", "order-1", namespace=NS))["ok"] is True
        rider_sids = {c.get_sid(NS) for c, _ in riders}
        assert agrees(server, NS, "order-1") == {*rider_sids, alice.get_sid(NS)}
        async with (
            aiohttp.ClientSession(headers=headers) as http,
            http.get(f"{url}/api/notifications/orders/1/status") as stream,
        ):
            events = sse_events(stream)
            assert (await anext(events)).json()["status"] == "pending"
            assert len(hub.members(SSE, "order-1")) == 1
            await db.execute("UPDATE orders SET rider_id = 'ravi' WHERE id = 1")
            end = await asyncio.wait_for(anext(events), 5)
            assert (end.event, end.json()["code"]) == ("end", "forbidden")
        await eventually(lambda: not hub.has_room(SSE, "order-1"))
        assert agrees(server, NS, "order-1") == {alice.get_sid(NS)}
        for client, _ in riders:  # still connected, in its own rooms on both namespaces
            sid = client.get_sid(NS)
            assert agrees(server, NS, "user-rita") >= {sid}
            assert agrees(server, NS, sid) == {sid}
            assert client.get_sid(SUPPORT) in agrees(server, SUPPORT, "user-rita")
        await db.execute("UPDATE orders SET status = 'ready' WHERE id = 1")
        await marker_arrived(db, "rita", *(r for _, r in riders))
        await marker_arrived(db, "alice", to_alice)
        assert [u["status"] for u in to_alice.of("orderStatusUpdate")] == ["ready"]
        for _, received in riders:
            assert received.of("orderStatusUpdate") == []
    finally:
        for client, _ in [*riders, (alice, to_alice)]:
            await gone(client)
    await eventually(lambda: list(hub.rooms(NS)) == [] and list(hub.rooms(SUPPORT)) == [])


async def test_an_event_of_one_namespace_reaches_no_client_of_another(
    start_server: StartServer, settings: Settings, db: asyncpg.Connection
) -> None:
    """/notifications and /support both have user-alice; SSE has order-1 beside them."""
    server = await start_server(settings)
    url = str(server.make_url("")).rstrip("/")
    alice_tok = token(settings, "alice")
    on_support = socketio.AsyncClient(reconnection=False)
    support_got: list[tuple[str, Any]] = []
    for name in ("notification", "orderStatusUpdate", "message"):
        on_support.on(
            name,
            (lambda n: lambda data=None: support_got.append((n, data)))(name),
            namespace=SUPPORT,
        )
    await on_support.connect(
        url, namespaces=[SUPPORT], auth={"token": alice_tok}, transports=["websocket"]
    )
    notified, to_notified = await client_on(url, alice_tok, "websocket")
    try:
        assert (await notified.call("joinRoom", "order-1", namespace=NS))["ok"] is True
        await db.execute("UPDATE orders SET status = 'ready' WHERE id = 1")
        await db.execute("SELECT tiffin_rt.notify_user('alice', 'promo', 'hello', '')")
        await to_notified.wait_for("orderStatusUpdate")
        await to_notified.wait_for("notification")
        # A /support message to user-alice, logged after the rest: once it is in, so is all
        # that /support would ever get of them.
        await db.execute(
            "SELECT tiffin_rt.append_event('support_message', ARRAY['user-alice'],"
            " jsonb_build_object('message', jsonb_build_object('marker', 'm1')))"
        )
        await eventually(lambda: any(n == "message" for n, _ in support_got))
        assert [n for n, _ in support_got] == ["message"]
    finally:
        await gone(notified)
        await gone(on_support)


def resident_kib() -> int:
    """This process's resident memory (server and clients both run in it)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


OPEN_LIMITS = {
    "connect_per_ip": "100000/minute",
    "handshakes_per_ip": "100000/minute",
    "events_per_user": "10000/second",
}


def hub_size(hub: Hub) -> tuple[int, int]:
    """(rooms, room memberships) over every namespace."""
    rooms = members = 0
    for namespace in list(hub._rooms):
        for _, clients in hub.rooms(namespace):
            rooms += 1
            members += len(clients)
    return rooms, members


def open_sockets(server: TestServer) -> int:
    """Engine.IO sessions not closed (python-engineio forgets a closed long-polling session
    on its next sweep, within ping_timeout)."""
    return sum(not s.closed for s in list(server.app[SOCKETIO].eio.sockets.values()))


def leftovers(server: TestServer) -> dict[str, int]:
    """What the server keeps per connection, counted."""
    sio = server.app[SOCKETIO]
    manager = sio.manager
    handler = sio.namespace_handlers[NS]
    return {
        "fanout clients": sum(len(c) for c in manager._clients.values()),
        "hub clients": len(manager.hub._joined),
        "socketio rooms": sum(len(r) for r in manager.rooms.values()),
        "handoffs": len(handler._resume.handoffs),
        "connections": len(handler._connections),
        "engine sockets": open_sockets(server),
    }


async def test_two_thousand_connect_join_disconnect_cycles_leave_the_hub_as_it_was(
    start_server: StartServer, dsn: str, db: asyncpg.Connection
) -> None:
    settings = make_settings(
        dsn, limits={**OPEN_LIMITS, "order_cache_ttl": 60}, logging={"level": "WARNING"}
    )
    server = await start_server(settings)
    hub = server.app[HUB]
    url = str(server.make_url("")).rstrip("/")
    watcher, to_watcher = await client_on(url, token(settings, "ops", "admin"), "websocket")
    assert (await watcher.call("joinRoom", "order-1", namespace=NS))["ok"] is True
    baseline = hub_size(hub)
    tokens = [token(settings, f"u{i}", "admin") for i in range(25)]

    async def cycle(i: int) -> None:
        path = "polling" if i % 10 == 0 else "websocket"
        client, _ = await client_on(
            url, tokens[i % 25], path, auth={"lastEventId": 0} if i % 3 == 0 else None
        )
        try:
            ack = await client.call("joinRoom", f"order-{1 + i % 4}", namespace=NS)
            assert ack["ok"] is True, ack
        finally:
            await gone(client)

    async def worker(first: int, count: int) -> None:
        for i in range(first, first + count):
            await cycle(i)

    async def cycles(first: int, count: int) -> None:
        per = count // 25
        await asyncio.gather(*(worker(first + w * per, per) for w in range(25)))
        await eventually(lambda: hub_size(hub) == baseline, timeout=10)

    await cycles(0, 500)
    gc.collect()
    rss_before = resident_kib()
    await cycles(500, 1500)
    await eventually(lambda: open_sockets(server) == 1, timeout=10)
    gc.collect()
    grown = resident_kib() - rss_before
    print(f"RSS grew {grown} KiB over 1500 cycles")
    alive = [o for o in gc.get_objects() if isinstance(o, SocketClient)]
    # The watcher's, and those whose token-expiry entries wait in the namespace's deadline heap
    # (cancelled entries are dropped once they outnumber twice the live ones, at most 26 here,
    # plus 64: deadlines.py): bounded, however many cycles ran.
    assert len(alive) <= 2 * 26 + 64 + 1, len(alive)
    assert hub_size(hub) == baseline
    assert leftovers(server) == {
        "fanout clients": 1,
        "hub clients": 1,
        "socketio rooms": 4,  # the watcher in None, its sid, user-ops and order-1
        "handoffs": 0,
        "connections": 1,
        "engine sockets": 1,
    }
    assert len(hub._resolved) < 100  # the members cache is emptied on every membership change
    assert grown < 20_000, f"{grown} KiB more after 1500 cycles"
    # and the watcher still hears its room
    await db.execute("UPDATE orders SET status = 'ready' WHERE id = 1")
    await to_watcher.wait_for("orderStatusUpdate")
    await gone(watcher)


def abort(client: socketio.AsyncClient) -> None:
    """Drop the client's connection at the TCP level: no CLOSE, no namespace disconnect."""
    ws = getattr(client.eio, "ws", None)
    if ws is not None:
        ws._response.connection.transport.abort()
    else:
        client.eio.http.connector._close()


async def test_clients_joining_leaving_and_vanishing_while_events_flow_leave_the_others_exact(
    start_server: StartServer, dsn: str, db: asyncpg.Connection
) -> None:
    """Stable clients on every transport get exactly the order's updates, in order, while
    others join, leave, disconnect and vanish mid-stream; nothing of the others is left."""
    settings = make_settings(
        dsn, limits={**OPEN_LIMITS, "order_cache_ttl": 60}, logging={"level": "WARNING"}
    )
    server = await start_server(settings)
    hub = server.app[HUB]
    url = str(server.make_url("")).rstrip("/")
    ops = token(settings, "ops", "admin")
    stable: list[tuple[socketio.AsyncClient, Received]] = []
    for path in ("websocket", "polling", "websocket", "polling"):
        stable.append(await client_on(url, ops, path))
    upgrading = [await client_on(url, ops, "upgrade") for _ in range(3)]
    for client, _ in [*stable, *upgrading]:
        assert (await client.call("joinRoom", "order-1", namespace=NS))["ok"] is True
    count = 60
    headers = {"Authorization": f"Bearer {ops}"}
    churned: list[tuple[bool, Received]] = []  # (joins order-3 too, what it got)

    async def churner(i: int) -> None:
        path = ("websocket", "polling", "upgrade")[i % 3]
        tok = token(settings, f"c{i}", "admin")
        while True:
            client, received = await client_on(url, tok, path)
            churned.append((i % 4 == 2, received))
            await client.call("joinRoom", "order-1", namespace=NS)
            await asyncio.sleep(0.01 * (i % 4))
            if i % 4 == 0:
                await client.call("leaveRoom", "order-1", namespace=NS)
            if i % 4 == 1:
                abort(client)
                await client.disconnect()
            elif i % 4 == 2:
                await client.emit("joinRoom", "order-3", namespace=NS)  # leaves during the join
                await gone(client)
            else:
                await gone(client)
            if done.is_set():
                return

    async def sse_reader(opened: asyncio.Event) -> list[str]:
        statuses: list[str] = []
        async with (
            aiohttp.ClientSession(headers=headers) as http,
            http.get(f"{url}/api/notifications/orders/1/status") as stream,
        ):
            async for event in sse_events(stream):
                statuses.append(event.json()["status"])
                opened.set()
                if statuses[-1] == "delivered":
                    return statuses
        return statuses

    done = asyncio.Event()
    opened = [asyncio.Event() for _ in range(2)]
    readers = [asyncio.create_task(sse_reader(o)) for o in opened]
    # Each stream's first event is the order as its read found it: changes start after it.
    await asyncio.wait_for(asyncio.gather(*(o.wait() for o in opened)), 10)
    assert len(hub.members(SSE, "order-1")) == 2
    churners = [asyncio.create_task(churner(i)) for i in range(12)]
    try:
        for n in range(count):
            await db.execute("UPDATE orders SET status = $1 WHERE id = 1", f"s{n}")
            await db.execute("UPDATE orders SET status = $1 WHERE id = 3", f"t{n}")
            await asyncio.sleep(0.005)
        await db.execute("UPDATE orders SET status = 'delivered' WHERE id = 1")
        done.set()
        await asyncio.wait_for(asyncio.gather(*churners), 30)
        await marker_arrived(db, "ops", *(r for _, r in [*stable, *upgrading]), timeout=10)
        expected = [f"s{n}" for n in range(count)] + ["delivered"]
        for client, received in [*stable, *upgrading]:
            got = [u["status"] for u in received.of("orderStatusUpdate")]
            assert got == expected, (client.transport(), len(got))
        for client, _ in upgrading:
            assert client.transport() == "websocket"
        for statuses in await asyncio.wait_for(asyncio.gather(*readers), 10):
            assert statuses == ["pending", *expected]
        for joins_3, received in churned:
            got = [u["status"] for u in received.of("orderStatusUpdate")]
            assert joins_3 or all(s[0] != "t" for s in got), got
            assert len(got) == len(set(got)), got
        sids = {c.get_sid(NS) for c, _ in [*stable, *upgrading]}
        await eventually(lambda: in_hub(hub, NS, "order-1") == sids, timeout=10)
        assert agrees(server, NS, "order-1") == sids
        assert not hub.has_room(NS, "order-3")
        assert not hub.has_room(SSE, "order-1")
    finally:
        done.set()
        for task in [*churners, *readers]:
            task.cancel()
        for client, _ in [*stable, *upgrading]:
            await gone(client)
    await eventually(lambda: hub_size(hub) == (0, 0), timeout=10)
    assert leftovers(server)["handoffs"] == 0


async def test_a_long_polling_session_upgraded_while_updates_flow_gets_each_once_in_order(
    start_server: StartServer, dsn: str, db: asyncpg.Connection
) -> None:
    settings = make_settings(dsn, logging={"level": "WARNING"})
    server = await start_server(settings)
    hub = server.app[HUB]
    url = str(server.make_url("")).rstrip("/")
    count = 80
    async with raw_session(url, "polling") as session:
        sid = await connect_namespace(session, NS, token(settings, "alice"))
        await session.send(f'42{NS},1["joinRoom","order-1"]')
        assert (await ack(session, NS, 1))[0]["ok"] is True
        [client] = hub.members(NS, sid)

        async def updates() -> None:
            for n in range(count):
                await db.execute("UPDATE orders SET status = $1 WHERE id = 1", f"s{n}")
                await asyncio.sleep(0.002)

        flowing = asyncio.create_task(updates())
        got: list[str] = []

        def note(message: str | bytes | None) -> None:
            prefix = f'42{NS},["orderStatusUpdate",'
            if isinstance(message, str) and message.startswith(prefix):
                got.append(json.loads(message[len(f"42{NS},") :])[1]["status"])

        while len(got) < count // 4:
            note(await session.receive())
        # Upgrade now, as socket.io-client does, while updates keep coming.
        ws = await session.http.ws_connect(f"{session.url}&transport=websocket&sid={session.sid}")
        await ws.send_str("2probe")
        assert await ws.receive_str(timeout=5) == "3probe"
        await ws.send_str("5")
        # What the long-polling GETs still brought, then the WebSocket.
        while (message := await asyncio.wait_for(session.polled.get(), 5)) is not None:
            if message not in ("6", "1"):
                note(message)
            if message == "1":
                break
        session.ws = ws
        if session.poller is not None:
            session.poller.cancel()
            session.poller = None
        await flowing
        while len(got) < count:
            note(await session.receive())
        assert got == [f"s{n}" for n in range(count)]
        assert list(hub.members(NS, sid)) == [client]
        assert agrees(server, NS, "order-1") == {sid}
    await eventually(lambda: not hub.has_room(NS, "order-1"))


async def test_python_socketio_rooms_api_and_the_hub_agree_after_each_call(
    start_server: StartServer, settings: Settings, db: asyncpg.Connection
) -> None:
    server = await start_server(settings)
    sio = server.app[SOCKETIO]
    hub = server.app[HUB]
    url = str(server.make_url("")).rstrip("/")
    admin = token(settings, "ops", "admin")
    clients = [await client_on(url, admin, path) for path in TRANSPORTS]
    sids = [c.get_sid(NS) for c, _ in clients]
    try:
        for sid in sids:
            await sio.enter_room(sid, "order-1", namespace=NS)
        assert agrees(server, NS, "order-1") == set(sids)
        for sid in sids:
            assert set(sio.rooms(sid, namespace=NS)) == {sid, "user-ops", "order-1"}
        await sio.leave_room(sids[0], "order-1", namespace=NS)
        assert agrees(server, NS, "order-1") == set(sids[1:])
        await db.execute("UPDATE orders SET status = 'ready' WHERE id = 1")
        await sio.emit("notification", {"type": "t", "title": "to"}, to="order-1", namespace=NS)
        for _, received in clients[1:]:
            await received.wait_for("orderStatusUpdate")
        await sio.close_room("order-1", namespace=NS)
        assert agrees(server, NS, "order-1") == set()
        assert not hub.has_room(NS, "order-1")
        await db.execute("UPDATE orders SET status = 'picked_up' WHERE id = 1")
        await marker_arrived(db, "ops", *(r for _, r in clients))
        assert [u["status"] for u in clients[0][1].of("orderStatusUpdate")] == []
        for _, received in clients[1:]:
            assert [u["status"] for u in received.of("orderStatusUpdate")] == ["ready"]
            assert [n["title"] for n in received.of("notification")] == ["to"]
    finally:
        for client, _ in clients:
            await gone(client)
    await eventually(lambda: list(hub.rooms(NS)) == [])


async def test_clients_that_leave_during_their_replay_leave_nothing_and_stop_nobody(
    start_server: StartServer, dsn: str, db: asyncpg.Connection
) -> None:
    settings = make_settings(
        dsn,
        limits={**OPEN_LIMITS, "connections_per_user": 100},
        logging={"level": "WARNING"},
        inbox={"on_connect": "off"},
    )
    server = await start_server(settings)
    hub = server.app[HUB]
    url = str(server.make_url("")).rstrip("/")
    alice = token(settings, "alice")
    await db.execute(
        "SELECT tiffin_rt.notify_user('alice', 'promo', 'n' || g, '')"
        " FROM generate_series(1, 400) g"
    )
    stayer, to_stayer = await client_on(url, alice, "polling")
    try:

        async def replayed_then_gone(i: int) -> None:
            path = ("websocket", "polling", "upgrade")[i % 3]
            client, _ = await client_on(url, alice, path, auth={"lastEventId": 0})
            if i % 2:
                abort(client)
            await client.disconnect()

        for _ in range(3):
            await asyncio.gather(*(replayed_then_gone(i) for i in range(12)))
            await db.execute("UPDATE orders SET status = 'ready' WHERE id = 1")
        await marker_arrived(db, "alice", to_stayer, timeout=10)
        assert to_stayer.of("orderStatusUpdate") != []
        await eventually(lambda: set(in_hub(hub, NS, "user-alice")) == {stayer.get_sid(NS)})
        await eventually(lambda: leftovers(server)["handoffs"] == 0)
        await eventually(lambda: leftovers(server)["fanout clients"] == 1)
    finally:
        await gone(stayer)
    await eventually(lambda: hub_size(hub) == (0, 0))


async def test_a_leave_sent_right_after_a_join_leaves_the_client_out_of_the_room(
    start_server: StartServer, dsn: str, db: asyncpg.Connection
) -> None:
    """An app that opens an order and closes it at once (join, then leave, without waiting
    for the join's answer): its last word is leave, so the order's updates stop."""
    settings = make_settings(dsn, limits={"order_cache_ttl": 0})  # each join reads the order
    server = await start_server(settings)
    hub = server.app[HUB]
    url = str(server.make_url("")).rstrip("/")
    results: list[tuple[str, Any]] = []
    clients = [
        await client_on(url, token(settings, "ops", "admin"), path)
        for path in ("websocket", "polling")
    ]
    try:
        for client, _ in clients:
            for room in ("order-1", "order-1", "order-1"):
                done = asyncio.get_running_loop().create_future()
                await client.emit(
                    "joinRoom",
                    room,
                    namespace=NS,
                    callback=lambda a=None: results.append(("join", a)),
                )
                await client.emit(
                    "leaveRoom",
                    room,
                    namespace=NS,
                    callback=lambda a=None, d=done: (results.append(("leave", a)), d.set_result(a)),
                )
                await asyncio.wait_for(done, 5)
        await eventually(lambda: len(results) == 12)
        assert in_hub(hub, NS, "order-1") == set(), results
        assert agrees(server, NS, "order-1") == set()
        await db.execute("UPDATE orders SET status = 'ready' WHERE id = 1")
        await marker_arrived(db, "ops", *(r for _, r in clients))
        for _, received in clients:
            assert received.of("orderStatusUpdate") == []
        # join, leave, join: the last join stands
        client = clients[0][0]
        await client.emit("joinRoom", "order-1", namespace=NS)
        await client.emit("leaveRoom", "order-1", namespace=NS)
        assert (await client.call("joinRoom", "order-1", namespace=NS))["ok"] is True
        await eventually(lambda: len(results) == 12)
        assert agrees(server, NS, "order-1") == {client.get_sid(NS)}
        # join, join: both answer ok (with the order), and the client is in
        other = clients[1][0]
        first = asyncio.get_running_loop().create_future()
        await other.emit(
            "joinRoom", "order-1", namespace=NS, callback=lambda a=None: first.set_result(a)
        )
        second = await other.call("joinRoom", "order-1", namespace=NS)
        for answer in (second, await asyncio.wait_for(first, 5)):
            assert answer["ok"] is True, answer
            assert answer["order"]["orderId"] == "1"
        assert agrees(server, NS, "order-1") == {client.get_sid(NS), other.get_sid(NS)}
    finally:
        for client, _ in clients:
            await gone(client)


async def test_a_leave_conversation_sent_right_after_a_join_leaves_the_agent_out_of_it(
    start_server: StartServer, settings: Settings
) -> None:
    """/support: joinConversation (which reads the database) then leaveConversation at once."""
    server = await start_server(settings)
    url = str(server.make_url("")).rstrip("/")
    async with connected(url, settings, "alice", support=["sam"]) as (alice, sam):
        conversation = await alice.start()
        room = f"conversation-{conversation['id']}"
        for _ in range(3):
            left = asyncio.get_running_loop().create_future()
            await sam.client.emit(
                "joinConversation", {"conversationId": conversation["id"]}, namespace=SUPPORT
            )
            await sam.client.emit(
                "leaveConversation",
                {"conversationId": conversation["id"]},
                namespace=SUPPORT,
                callback=lambda a=None, f=left: f.set_result(a),
            )
            assert (await asyncio.wait_for(left, 5))["ok"] is True
        # The join's answer, if it came after the leave's, is in by the time this one is.
        await sam.call("history", {"conversationId": conversation["id"]})
        assert sam.client.get_sid(SUPPORT) not in agrees(server, SUPPORT, room)
