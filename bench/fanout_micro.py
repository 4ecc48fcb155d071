"""The Python cost of a room emit per member, without the send system call.

Builds the Socket.IO server `tiffin-rt serve` builds (`create_socketio_server`), puts MEMBERS
lean WebSocket connections in one `/notifications` room, with a stand-in transport whose
`write` only counts, and times `RoomFanout.publish` of one `orderStatusUpdate` followed by the
end-of-tick write, EVENTS times (one event per tick, as in the paced scenario). What it prints
is what tiffin_rt spends per delivery on top of the write system call. Run it under valgrind's
callgrind for an instruction count that does not move with the machine's load:

  .venv/bin/python -m bench.fanout_micro [--members 1000] [--events 300]
  VG="valgrind --tool=callgrind --callgrind-out-file=/dev/null"
  $VG .venv/bin/python -m bench.fanout_micro --events 0
  $VG .venv/bin/python -m bench.fanout_micro --events 100

(the difference of the two "Collected" counts, divided by events x members, is the
instructions per delivery).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from tiffin_rt.config import Settings
from tiffin_rt.transports.socketio.fanout import RoomFanout
from tiffin_rt.transports.socketio.server import create_socketio_server
from tiffin_rt.transports.socketio.websocket import LeanWebSocket

NAMESPACE = "/notifications"
ROOM = "order-1"


class CountingTransport:
    """Stands in for uvloop's transport: the same calls, each a C call as uvloop's are, and
    nothing sent (`write` keeps a reference to what it was given)."""

    __slots__ = ("get_write_buffer_size", "is_closing", "write", "written")

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.is_closing = bool  # bool() is False
        self.get_write_buffer_size = int  # int() is 0
        self.write = self.written.append


async def room_of(members: int) -> tuple[RoomFanout, list[CountingTransport]]:
    sio: Any = create_socketio_server(Settings())
    fanout: RoomFanout = sio.manager
    transports = []
    for n in range(members):
        eio_sid = f"e{n}"
        socket = LeanWebSocket(sio.eio, eio_sid)
        transport = CountingTransport()
        socket.transport = transport  # type: ignore[assignment]
        sio.eio.sockets[eio_sid] = socket
        sid = await fanout.connect(eio_sid, NAMESPACE)
        fanout.basic_enter_room(sid, NAMESPACE, ROOM)
        transports.append(transport)
    return fanout, transports


async def main(members: int, events: int) -> None:
    fanout, transports = await room_of(members)
    payload = {
        "orderId": "1",
        "status": "preparing",
        "previousStatus": "confirmed",
        "timestamp": "2026-12-01T10:00:00.000Z",
        "eventId": 1,
    }
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    for n in range(events):
        payload["eventId"] = n
        fanout.publish("orderStatusUpdate", payload, NAMESPACE, [ROOM, "user-42"])
        done = loop.create_future()
        loop.call_soon(done.set_result, None)  # after the flush the publish scheduled
        await done
    elapsed = time.perf_counter() - started
    writes = sum(len(t.written) for t in transports)
    assert writes == members * events, (writes, members * events)
    if events:
        print(
            f"{members} members, {events} events: {elapsed * 1e9 / (members * events):.0f} ns"
            f" of Python per delivery ({writes} writes)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--events", type=int, default=300)
    args = parser.parse_args()
    import uvloop

    uvloop.run(main(args.members, args.events))
