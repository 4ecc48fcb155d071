"""The library internals the lean transport needs, checked against the installed libraries.

`check_upstream` runs when the app is built; these tests fail when a python-engineio,
python-socketio, aiohttp or Python upgrade removes or reshapes a touchpoint, and show that the
server then says so once and serves every client on the stock transport: bounded
(StockSocket) when only the lean transport's touchpoints are gone, python-engineio's socket
as it comes when the bounded socket's are.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import asyncpg
import engineio
import pytest
import socketio
from aiohttp import web_protocol
from engineio.async_socket import AsyncSocket

from tests.conftest import StartServer
from tests.helpers import base_url, disconnecting, make_settings, sio_client, token
from tiffin_rt import keys
from tiffin_rt.transports.socketio import engine_internals
from tiffin_rt.transports.socketio.engine_internals import UPSTREAM, check_upstream
from tiffin_rt.transports.socketio.stock import StockSocket
from tiffin_rt.transports.socketio.websocket import LeanWebSocket

NS = "/notifications"


class EngineServerWithoutTriggerEvent(engineio.AsyncServer):  # type: ignore[misc]
    """python-engineio as a release that renamed `_trigger_event` would be."""

    _trigger_event = None


class SocketIOServerWithNewDispatch(socketio.AsyncServer):  # type: ignore[misc]
    """python-socketio as a release whose message dispatch takes one more argument would be."""

    async def _handle_eio_message(self, eio_sid: str, data: Any, transport: str) -> None:
        return None


class RequestHandlerWithoutTail:
    """aiohttp's request handler as a release without `_message_tail` would be."""

    transport: Any = None

    def connection_lost(self, exc: BaseException | None) -> None:
        return None


class QueueWithoutPut(asyncio.Queue[Any]):
    """asyncio.Queue as a Python whose queue no longer stores items through `_put` would be."""

    _put = None


class SlottedSocket(AsyncSocket):  # type: ignore[misc]
    """A socket class whose instances a lean socket's class could not replace."""

    __slots__ = ("extra",)


def test_the_installed_libraries_have_every_touchpoint() -> None:
    assert check_upstream(socket_classes=(LeanWebSocket, StockSocket)) == []


@pytest.mark.parametrize(
    ("changed", "named"),
    [
        ({"engine_server": EngineServerWithoutTriggerEvent}, "AsyncServer._trigger_event missing"),
        (
            {"socketio_server": SocketIOServerWithNewDispatch},
            "socketio.AsyncServer._handle_eio_message(self, eio_sid, data, transport)",
        ),
        ({"request_handler": RequestHandlerWithoutTail}, "RequestHandler._message_tail missing"),
    ],
    ids=["removed", "reshaped", "aiohttp"],
)
def test_a_removed_or_reshaped_touchpoint_is_named(changed: dict[str, Any], named: str) -> None:
    problems = check_upstream(
        dataclasses.replace(UPSTREAM, **changed), socket_classes=(LeanWebSocket, StockSocket)
    )
    assert len(problems) == 1, problems
    assert named in problems[0].what


def test_a_socket_whose_class_cannot_be_switched_is_named() -> None:
    problems = check_upstream(
        dataclasses.replace(UPSTREAM, engine_socket=SlottedSocket), socket_classes=(LeanWebSocket,)
    )
    assert [(p.touchpoint, p.what) for p in problems] == [
        ("E3", "engineio.AsyncSocket.__class__ cannot become LeanWebSocket")
    ]


def test_the_request_handler_still_has_its_tail() -> None:
    # The one touchpoint only a slot shows: stand-ins above lack it, the real class has it.
    assert "_message_tail" in web_protocol.RequestHandler.__slots__


@pytest.mark.parametrize(
    ("changed", "named", "socket_class"),
    [
        # Only the lean transport needs it: the stock transport, still bounded.
        ({"engine_server": EngineServerWithoutTriggerEvent}, "_trigger_event", StockSocket),
        # The bounded stock socket needs it too: python-engineio's socket as it comes.
        ({"queue": QueueWithoutPut}, "asyncio.Queue._put missing", AsyncSocket),
    ],
    ids=["lean-only", "bounded"],
)
async def test_a_missing_touchpoint_means_one_warning_and_the_stock_transport(
    start_server: StartServer,
    dsn: str,
    db: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    changed: dict[str, Any],
    named: str,
    socket_class: type[Any],
) -> None:
    monkeypatch.setattr(engine_internals, "UPSTREAM", dataclasses.replace(UPSTREAM, **changed))
    caplog.set_level(logging.WARNING, logger=engine_internals.__name__)
    settings = make_settings(dsn)
    server = await start_server(settings)
    warnings = [r for r in caplog.records if r.name == engine_internals.__name__]
    assert len(warnings) == 1
    assert named in warnings[0].getMessage()
    assert "stock transport" in warnings[0].getMessage()
    sio = server.app[keys.SOCKETIO]
    assert sio.lean_transport is False
    assert sio.bounded_sockets is (socket_class is StockSocket)
    # A WebSocket-first client, which would have had the lean transport, still gets it all.
    async with disconnecting(sio_client(base_url(server), token(settings, "alice"))) as (
        client,
        received,
    ):
        joined = await client.call("joinRoom", "order-1", namespace=NS, timeout=5)
        assert joined["ok"] is True
        assert type(sio.eio.sockets[client.eio.sid]) is socket_class
        await db.execute("UPDATE orders SET status = 'confirmed' WHERE id = 1")
        [update] = await received.wait_for("orderStatusUpdate")
        assert (update["orderId"], update["status"]) == ("1", "confirmed")
