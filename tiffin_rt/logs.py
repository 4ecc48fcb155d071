"""Logging set-up, and an access log that never writes a query string (tokens live there)."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime

import orjson
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

from tiffin_rt.logcontext import CONNECTION_ID, REQUEST_ID

# A JWT (three base64url parts, the first a JSON header), a token query parameter, a bearer
# credential (an opaque one too: metrics.token), a "token" field of a payload as Python or
# JSON prints it (a Socket.IO auth payload, a refreshToken argument).
_TOKEN = re.compile(
    r"eyJ[\w-]*\.[\w-]*\.[\w-]*"
    r"|(?<=access_token=)[^&\s\"']+"
    r"|(?<=[Bb]earer )[^\s\"',;]+"
    r"|(?<=[Tt]oken': ')[^']+"
    r"|(?<=[Tt]oken\": \")[^\"]+"
    r"|(?<=[Tt]oken\":\")[^\"]+"
)

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


class JsonLines(logging.Formatter):
    """`server.log_format: json`: one JSON object per line with time, level, logger, message,
    request_id or connection_id when the line is about one, and the exception.

    A fixed set of fields: python-json-logger copies every `extra` attribute of a record into
    the line, where a token could hide; here each text goes through `redact` as well, even if
    a handler without RedactTokens writes it.
    """

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        request_id = REQUEST_ID.get()
        if request_id is not None:
            line["request_id"] = request_id
        connection_id = CONNECTION_ID.get()
        if connection_id is not None:
            line["connection_id"] = connection_id
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exception"] = redact(record.exc_text)
        if record.stack_info:
            line["stack"] = redact(self.formatStack(record.stack_info))
        return orjson.dumps(line).decode()


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str, log_format: str = "text") -> None:
    """Lines on stderr, text or JSON (`server.log_format`), tokens masked either way."""
    logging.basicConfig(level=level, format=TEXT_FORMAT)
    if log_format == "json":
        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonLines())
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
