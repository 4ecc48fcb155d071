"""Engine.IO faults on every transport: one WARNING line, then the session ends at once.

Stock python-engineio, left alone, logs a traceback for a packet it cannot decode and keeps
the session; a long-polling POST that must close its session waits, inside the POST, for a
GET to collect the close packet (one that never comes when the client is the broken party).
Here a client packet is decoded once by `decode_client_packet`, a session is ended by
`end_session` without waiting for anybody, and a long-polling POST that is malformed or over
`limits.max_message_bytes` is answered 400/413 at once (`guarded_post`, the POST handler of
stock.StockSocket).

It uses python-engineio's public (if undocumented) socket attributes: its packet queue,
`closed`/`closing`, `receive`; the private ones are all in engine_internals.py.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, NoReturn

from aiohttp import web
from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet
from engineio import payload as eio_payload

from tiffin_rt import metrics
from tiffin_rt.logs import client_fault
from tiffin_rt.transports.bodies import read_bounded

log = logging.getLogger(__name__)


class PacketError(ValueError):
    """What a client sent is not an Engine.IO packet."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a long-polling POST was refused, kept on its request until the answer is built."""

    status: int
    code: str
    message: str


POST_REFUSAL = web.RequestKey("post_refusal", Refusal)


def decode_client_packet(data: str | bytes) -> eio_packet.Packet:
    """The Engine.IO packet in one message, or PacketError (an empty message, `abc`, bad base64)."""
    try:
        pkt = eio_packet.Packet(encoded_packet=data)
    except (ValueError, TypeError, IndexError) as exc:  # binascii.Error is a ValueError
        raise PacketError(type(exc).__name__) from None
    return known_type(pkt)


def known_type(pkt: eio_packet.Packet) -> eio_packet.Packet:
    """Engine.IO has packet types 0 to 6; `7`, `9` decode but are nothing (Engine.IO's own
    receive then fails with a traceback)."""
    if not 0 <= pkt.packet_type < len(eio_packet.packet_names):
        raise PacketError(f"unknown packet type {pkt.packet_type}")
    return pkt


async def end_session(socket: Any, *, abort: bool = False) -> None:
    """Close an Engine.IO session now, on any transport, without waiting for a poll.

    The close packet is queued (unless `abort`) for a GET that may be waiting; the None after
    it ends the stock WebSocket writer, which then closes the WebSocket. A lean socket
    (websocket.LeanWebSocket) writes the close packet and closes its connection itself.
    """
    if socket is None or socket.closed or socket.closing:
        return
    await socket.close(wait=False, abort=abort, reason=socket.server.reason.SERVER_DISCONNECT)
    if not abort:  # an aborted stock socket puts its None itself (stock.StockSocket.close)
        socket.queue.put_nowait(None)


async def guarded_post(socket: Any, environ: dict[str, Any]) -> None:
    """A long-polling POST: its packets handled, or a 400/413 at once and the session ended.

    python-engineio's own handler logs a traceback for a payload it cannot decode and answers
    200; for one over the limit it waits, inside the POST, for a GET to collect the close
    packet. Here the refusal is kept on the request (see refusal_response) and an
    EngineIOError makes Engine.IO answer now and forget the session, which is already closed.
    """
    request: web.Request = environ["aiohttp.request"]
    limit = socket.server.max_http_buffer_size
    body = await read_bounded(request, limit)
    if body is None:
        await _refuse(socket, request, 413, "too_large", f"a POST may carry at most {limit} bytes")
    try:
        # An empty body is an empty packet: as malformed as `abc` (Engine.IO's own reads none).
        packets = eio_payload.Payload(encoded_payload=body.decode("utf-8")).packets
        if not packets:
            raise ValueError("empty")
        for pkt in packets:
            known_type(pkt)
    except (ValueError, TypeError, IndexError):  # UnicodeDecodeError, PacketError: ValueErrors
        await _refuse(socket, request, 400, "bad_request", "not an Engine.IO payload")
    for pkt in packets:
        await socket.receive(pkt)
        if pkt.packet_type == eio_packet.CLOSE:
            return  # the client closed the session itself
        if socket.closed or socket.closing:
            # The Socket.IO layer found the packet malformed, counted and logged it, and ended
            # the session.
            request[POST_REFUSAL] = Refusal(400, "bad_request", "malformed Socket.IO packet")
            raise eio_exceptions.EngineIOError()


async def _refuse(
    socket: Any, request: web.Request, status: int, code: str, message: str
) -> NoReturn:
    metrics.refused("engineio", "too_large" if status == 413 else "malformed_packet")
    client_fault(
        log, "long-polling POST refused (%s); closing %s", message, socket.sid, session_ended=True
    )
    request[POST_REFUSAL] = Refusal(status, code, message)
    await end_session(socket)
    raise eio_exceptions.EngineIOError()


def refusal_response(request: web.Request, answer: web.StreamResponse) -> web.StreamResponse:
    """A refused POST's answer: the JSON error shape, with Engine.IO's CORS headers kept."""
    refusal = request.get(POST_REFUSAL)
    if refusal is None:
        return answer
    response = web.json_response(
        {"error": {"code": refusal.code, "message": refusal.message}}, status=refusal.status
    )
    for name, value in answer.headers.items():
        if name.lower().startswith("access-control-"):
            response.headers[name] = value
    return response
