"""Draining a node on SIGTERM/SIGINT: its clients reconnect to the other nodes and resume.

By the time this runs (aiohttp's `on_shutdown`), the listening sockets are closed: a load
balancer's next connect to this node is refused and goes to another node (nginx: the next
server of the upstream). Then every client is told to go, in the one way every client kind
takes as "reconnect": its transport closes.

- SSE streams end (rider location streams too); an `EventSource` reconnects by itself with
  `Last-Event-ID`.
- Socket.IO sessions end with their connection, *without* Engine.IO's close packet or a
  Socket.IO DISCONNECT: the official JavaScript client reconnects after "transport close" but
  not after "io server disconnect", and python-socketio's client takes an Engine.IO close
  packet as final (no reconnection at all). A WebSocket is closed; a waiting long-poll is
  answered empty and the session's next request gets 400 (unknown session) from wherever it
  lands, which both clients take as a transport error and reconnect.

Clients that present their last `eventId` (Socket.IO `auth.lastEventId`, SSE `Last-Event-ID`)
get what they missed replayed from the log on the node they reach, then live events: nothing
lost, nothing twice. `/readyz` answers 503 `draining` to whatever still reaches this node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiohttp import web

from tiffin_rt.core.hub import SSE
from tiffin_rt.keys import HUB, SETTINGS, SOCKETIO
from tiffin_rt.transports.socketio.engine_guard import end_session
from tiffin_rt.transports.sse_location import LOCATION

log = logging.getLogger(__name__)


class Drain:
    """Whether this node has started draining."""

    def __init__(self) -> None:
        self.started = False
        # Logs what is still running should the shutdown outlast its bounds (report_stuck).
        self.watchdog: asyncio.TimerHandle | None = None


DRAIN = web.AppKey("drain", Drain)


async def drain_connections(app: web.Application) -> None:
    """On SIGTERM/SIGINT: end SSE streams and Socket.IO sessions so clients reconnect elsewhere."""
    drain = app[DRAIN]
    first = not drain.started
    drain.started = True
    timeout = app[SETTINGS].server.shutdown_timeout
    if first:
        # This drain, then aiohttp's wait for open handlers, are each bounded by the timeout;
        # past both (and a margin), say what the process is still waiting for.
        drain.watchdog = asyncio.get_running_loop().call_later(
            2 * timeout + STUCK_MARGIN, report_stuck, timeout
        )
    hub = app[HUB]
    sio: Any = app[SOCKETIO]
    sockets = list(sio.eio.sockets.values())
    log.info(
        "draining: ending %d SSE streams, %d rider location streams and %d Socket.IO sessions",
        hub.count(SSE),
        hub.count(LOCATION),
        len(sockets),
    )
    hub.close_all(SSE)
    hub.close_all(LOCATION)  # rider positions: a reconnect starts from the newest
    if sockets:
        # Bounded: a socket whose reader died on a bad packet may never finish closing.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(end_session(socket, abort=True) for socket in sockets)),
                timeout,
            )
    if first:  # python-engineio's shutdown runs once; it waits for its service task
        try:
            await asyncio.wait_for(sio.shutdown(), timeout)
        except TimeoutError:
            log.warning("shutdown: python-engineio's service task did not stop in %.1f s", timeout)


async def shutdown_done(app: web.Application) -> None:
    """The app's last cleanup: the shutdown finished, nothing to report."""
    watchdog, app[DRAIN].watchdog = app[DRAIN].watchdog, None
    if watchdog is not None:
        watchdog.cancel()


# Seconds past the two bounded waits of a shutdown before what is still running is logged.
STUCK_MARGIN = 2.0


def report_stuck(timeout: float) -> None:
    """One WARNING naming every task still running, where it waits: a shutdown past its
    bounds (an orchestrator's SIGKILL follows) leaves a trace of why."""
    tasks = [t for t in asyncio.all_tasks() if not t.done()]
    where = []
    for task in tasks:
        frames = task.get_stack(limit=3)
        at = " < ".join(
            f"{f.f_code.co_name} ({f.f_code.co_filename.rsplit('/', 2)[-1]}:{f.f_lineno})"
            for f in reversed(frames)
        )
        where.append(f"{task.get_name()}: {at or 'not started'}")
    log.warning(
        "shutdown still running %.1f s after it began; %d task(s) left: %s",
        2 * timeout + STUCK_MARGIN,
        len(tasks),
        "; ".join(where) or "none",
    )
