"""A payload serialised once and framed for every transport: the Socket.IO packet built around
the JSON bytes an SSE event carries is the packet python-socketio itself would write."""

from __future__ import annotations

import json
from typing import Any

import pytest
from engineio import packet as eio_packet
from socketio import packet as sio_packet

from tiffin_rt.core import jsonwire
from tiffin_rt.transports.socketio.fanout import RoomFanout
from tiffin_rt.transports.socketio.websocket import ws_frame

PAYLOADS: list[Any] = [
    {"orderId": "1", "status": "ready", "previousStatus": None, "eventId": 7},
    {"text": 'quote " backslash \\ nul-free \x01 é 寿司 🍱 \u2028', "n": [1, 2.5, True]},
    {"nested": {"deep": [{"x": "y" * 300}]}},  # a frame past 125 bytes: a 2-byte length
    {"big": "z" * 70_000},  # past 65,535 bytes: an 8-byte length
    [],
]


@pytest.mark.parametrize("namespace", ["/notifications", "/"])
@pytest.mark.parametrize("payload", PAYLOADS, ids=["status", "awkward", "nested", "big", "empty"])
def test_json_frames_are_the_packet_python_socketio_decodes(namespace: str, payload: Any) -> None:
    frame, packet = RoomFanout.json_frames("orderStatusUpdate", jsonwire.dumps(payload), namespace)
    assert packet.packet_type == eio_packet.MESSAGE
    assert frame == ws_frame(("4" + packet.data).encode())
    decoded = sio_packet.Packet(encoded_packet=packet.data)
    assert decoded.packet_type == sio_packet.EVENT
    assert decoded.namespace == (None if namespace == "/" else namespace)
    assert decoded.id is None
    assert decoded.data == ["orderStatusUpdate", payload]
    # Byte for byte what python-socketio's own encoder writes with a compact JSON encoder.
    own = sio_packet.Packet(sio_packet.EVENT, ["orderStatusUpdate", payload], namespace=namespace)
    own.json = _Compact
    assert packet.data == own.encode()


class _Compact:
    @staticmethod
    def dumps(obj: Any, **_kwargs: Any) -> str:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def test_a_lone_surrogate_is_written_as_json_writes_it() -> None:
    """orjson refuses an unpaired surrogate, which JSON (and a browser's JSON.parse) allows."""
    body = jsonwire.dumps({"text": "a\ud800b"})
    assert json.loads(body) == {"text": "a\ud800b"}
    _, packet = RoomFanout.json_frames("notification", body, "/notifications")
    assert sio_packet.Packet(encoded_packet=packet.data).data == [
        "notification",
        {"text": "a\ud800b"},
    ]
