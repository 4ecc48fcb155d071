"""Running the app: uvloop, logging, graceful shutdown on SIGTERM and SIGINT."""

from __future__ import annotations

import gc
import logging

import uvloop
from aiohttp import web

from tiffin_rt.app import StartupError, create_app
from tiffin_rt.config import Settings
from tiffin_rt.logs import AccessLogger, configure_logging

log = logging.getLogger(__name__)

# Connections the kernel queues until the loop accepts them (capped by net.core.somaxconn).
# aiohttp's 128 is what a reconnect burst fills: the bench's 4 x 32 concurrent connects kept
# it at 124 of 128; past it, SYNs are dropped and clients wait a retransmit (1 s, then 3 s).
LISTEN_BACKLOG = 1024


async def _freeze_startup_objects(_app: web.Application) -> None:
    """What is alive once the server has started (modules, settings, pools) lives as long as
    the process: take it out of the cyclic garbage collector's scans, so that a full
    collection walks only what connections and events created, and pauses the loop less."""
    gc.collect()
    gc.freeze()


def serve(settings: Settings) -> None:
    """Block until SIGINT/SIGTERM; raises OSError when the port cannot be bound."""
    from tiffin_rt.cli import CliError

    configure_logging(settings.logging.level)
    app = create_app(settings)
    app.on_startup.append(_freeze_startup_objects)  # after the database and listener started
    try:
        web.run_app(
            app,
            host=settings.server.host,
            port=settings.server.port,
            shutdown_timeout=settings.server.shutdown_timeout,
            backlog=LISTEN_BACKLOG,
            access_log_class=AccessLogger,
            access_log=logging.getLogger("aiohttp.access") if settings.server.access_log else None,
            print=lambda text: log.info("%s", text.strip()),
            loop=uvloop.new_event_loop(),
        )
    except StartupError as exc:
        raise CliError(str(exc)) from None
