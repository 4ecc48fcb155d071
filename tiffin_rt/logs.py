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
