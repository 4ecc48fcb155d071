"""The python-socketio server, attached to the aiohttp app."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import socketio
from aiohttp import web

from tiffin_rt.config import Settings
from tiffin_rt.transports.socketio.fanout import FastAsyncServer

log = logging.getLogger(__name__)


class GuardedServer(FastAsyncServer):
    """A packet python-socketio cannot decode closes that one connection with one log line.

    Left alone, each malformed packet logs a full traceback at ERROR and the sender stays
    connected to send the next one: a cheap way to flood the logs.
    """

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        try:
            await super()._handle_eio_message(eio_sid, data)
        except Exception as exc:
            # The packet itself may hold a token: only its size and the error type are logged.
            size = len(data) if isinstance(data, str | bytes) else 0
            log.warning(
                "malformed Socket.IO packet (%s, %d bytes); closing %s",
                type(exc).__name__,
                size,
                eio_sid,
            )
            await self.eio.disconnect(eio_sid)


class _OrjsonCodec:
    """python-socketio calls json.dumps/json.loads; orjson is several times faster."""

    @staticmethod
    def dumps(obj: Any, **_kwargs: Any) -> str:
        return orjson.dumps(obj).decode()

    @staticmethod
    def loads(text: str | bytes, **_kwargs: Any) -> Any:
        return orjson.loads(text)


def create_socketio_server(settings: Settings) -> socketio.AsyncServer:
    # None makes Engine.IO accept only the server's own origin; [] would turn the check off.
    origins: list[str] | None = list(settings.server.cors_origins) or None
    return GuardedServer(
        websocket_compression=settings.delivery.websocket_compression,
        max_buffered=settings.delivery.max_buffered_kib * 1024,
        async_mode="aiohttp",
        cors_allowed_origins=origins,
        cors_credentials=True,
        max_http_buffer_size=settings.limits.max_message_bytes,
        json=_OrjsonCodec,
        logger=False,
        engineio_logger=False,
        transports=["websocket", "polling"],
        ping_interval=settings.delivery.ping_interval,
        ping_timeout=settings.delivery.ping_timeout,
    )


def attach(sio: socketio.AsyncServer, app: web.Application) -> None:
    sio.attach(app, socketio_path="socket.io")
