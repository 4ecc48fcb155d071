"""Logging set-up, and an access log that never writes a query string (tokens live there)."""

from __future__ import annotations

import logging
import re

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

# A JWT (three base64url parts, the first a JSON header) or a token query parameter.
_TOKEN = re.compile(r"eyJ[\w-]*\.[\w-]*\.[\w-]*|(?<=access_token=)[^&\s\"']+")

# Loggers that would write packets, query strings or auth payloads below WARNING.
QUIET_LOGGERS = ("engineio.server", "socketio.server", "aiohttp_jwt")


# python-engineio logs a client's bad request (an unknown or closed session, a bad transport,
# a refused origin) at ERROR once per kind, with this tail, then at INFO.
_ENGINEIO_ONCE = " (further occurrences of this error will be logged with level INFO)"


def redact(text: str) -> str:
    return _TOKEN.sub("[redacted]", text)


class RedactTokens(logging.Filter):
    """Last line of defence: a token that reaches a log record is masked before it is written."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class ClientFaultsAsWarnings(logging.Filter):
    """python-engineio's log-once ERRORs are what a client sent (a poll on a session the server
    closed, a bad transport): a WARNING, never an ERROR an operator is paged for."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and record.exc_info is None:
            message = record.getMessage()
            if message.endswith(_ENGINEIO_ONCE):
                record.msg, record.args = message.removesuffix(_ENGINEIO_ONCE), None
                record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def quiet_client_faults() -> None:
    """Install ClientFaultsAsWarnings on python-engineio's logger, once per process."""
    logger = logging.getLogger("engineio.server")
    if not any(isinstance(f, ClientFaultsAsWarnings) for f in logger.filters):
        logger.addFilter(ClientFaultsAsWarnings())


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactTokens())
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))


class AccessLogger(AbstractAccessLogger):
    """Method, path without query, status, size and time: no token from ?access_token=."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %s %s %.4fs',
            request.remote,
            request.method,
            request.path,
            response.status,
            response.body_length,
            time,
        )
