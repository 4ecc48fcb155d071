"""One hub: every Socket.IO connection is a client in the hub's rooms, beside the SSE streams,
and nothing of a connection stays there once it has gone (else room emits would keep reaching
for it)."""

from __future__ import annotations

from aiohttp.test_utils import TestServer

from tests.conftest import StartServer
from tests.helpers import eventually, leave, sio_client, token
from tiffin_rt.config import Settings
from tiffin_rt.core.hub import Hub
from tiffin_rt.keys import HUB, SOCKETIO

NS = "/notifications"


def sids(server: TestServer, room: str) -> set[str]:
    """The connections python-socketio's own room API says are in `room`."""
    return {sid for sid, _ in server.app[SOCKETIO].manager.get_participants(NS, room)}


def hub_sids(hub: Hub, room: str | None) -> set[str]:
    return {getattr(client, "sid", "") for client in hub.members(NS, room)}


async def test_socketio_rooms_live_in_the_hub_and_are_left_with_the_connection(
    start_server: StartServer, settings: Settings
) -> None:
    server = await start_server()
    hub = server.app[HUB]
    url = str(server.make_url("")).rstrip("/")
    alice, _ = await sio_client(url, token(settings, "alice", role="admin"))
    bob, _ = await sio_client(url, token(settings, "bob", role="admin"))
    try:
        assert (await alice.call("joinRoom", "order-1", namespace=NS))["ok"]
        [member] = hub.members(NS, "user-alice")
        assert getattr(member.who, "user_id", None) == "alice"
        assert hub_sids(hub, "order-1") == sids(server, "order-1") == {alice.get_sid(NS)}
        assert hub_sids(hub, None) == {alice.get_sid(NS), bob.get_sid(NS)}
        assert not hub.has_room("/support", "order-1")  # another namespace's rooms

        assert (await alice.call("leaveRoom", "order-1", namespace=NS))["ok"]
        assert not hub.has_room(NS, "order-1")
        assert sids(server, "order-1") == set()
    finally:
        await leave(alice)
    await eventually(lambda: hub_sids(hub, None) == {bob.get_sid(NS)})
    assert not hub.has_room(NS, "user-alice")
    await leave(bob)
    await eventually(lambda: not hub.has_room(NS, None))
    assert list(hub.rooms(NS)) == []
