"""Logging set-up, and an access log that never writes a query string (tokens live there)."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime

import orjson
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web import BaseRequest, StreamResponse

from tiffin_rt.logcontext import CONNECTION_ID, REQUEST_ID

# A JWT (three base64url parts, the first a JSON header); any `...token=` query parameter
# (token, access_token, refresh_token: in any case); the value of an Authorization or Cookie
# header, up to the line's end (a raw CR LF, or the `\\r` of a request line aiohttp's parser
# quotes as bytes); a bearer credential (an opaque one too: metrics.token); a "token" or
# "authorization" field of a payload or header map as Python or JSON prints it.
_TOKEN = re.compile(
    r"eyJ[\w-]*\.[\w-]*\.[\w-]*"
    r"|(?i:(?<=token=))[^&\s\"']+"
    r"|(?i:(?<=authorization: ))(?:(?!\\r)[^\r\n\"'])+"
    r"|(?i:(?<=cookie: ))(?:(?!\\r)[^\r\n\"'])+"
    r"|(?<=[Bb]earer )[^\s\"',;]+"
    r"|(?i:(?<=token': '))[^']+"
    r"|(?i:(?<=token\": \"))[^\"]+"
    r"|(?i:(?<=token\":\"))[^\"]+"
    r"|(?i:(?<=authorization': '))[^']+"
    r"|(?i:(?<=authorization\": \"))[^\"]+"
    r"|(?i:(?<=authorization\":\"))[^\"]+"
)

# Loggers that would write packets, query strings or auth payloads below WARNING.
QUIET_LOGGERS = ("engineio.server", "socketio.server", "aiohttp_jwt")

# Loggers whose records about what a client sent wrong ClientFaults rewrites and rate-limits.
CLIENT_FAULT_LOGGERS = ("aiohttp.server", "engineio.server")
# The attribute that marks a record as a client's fault (RecentErrors leaves such lines out).
CLIENT_FAULT = "client_fault"

# python-engineio logs a client's bad request (an unknown or closed session, a bad transport,
# a refused origin) at ERROR once per kind, with this tail, then at INFO.
_ENGINEIO_ONCE = " (further occurrences of this error will be logged with level INFO)"
# A quoted request line or header in one of aiohttp's parser errors is cut to this.
_QUOTED_MAX = 300


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


def is_client_fault(record: logging.LogRecord) -> bool:
    return bool(getattr(record, CLIENT_FAULT, False))


class ClientFaultBudget:
    """At most LINES_PER_WINDOW client-fault lines per WINDOW_SECONDS for the whole process;
    the rest are counted and summed up in one line when their window ends, so a flood of bad
    requests costs a few log lines, whatever its rate."""

    WINDOW_SECONDS = 10.0
    LINES_PER_WINDOW = 5

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._window_start = -self.WINDOW_SECONDS
        self._written = 0
        self._suppressed = 0
        self._suppressed_level = logging.NOTSET  # the summary's: the highest it stands for
        self._summary_loop: asyncio.AbstractEventLoop | None = None
        self.total = 0
        self.suppressed_total = 0
        self.log = logging.getLogger("tiffin_rt.client_faults")

    def describe(self) -> dict[str, int]:
        return {"total": self.total, "suppressed": self.suppressed_total}

    def admit(self, level: int = logging.WARNING) -> bool:
        """Whether this fault's line (at `level`) is written; counted either way."""
        self.total += 1
        summary_loop = self._summary_loop
        if summary_loop is not None and summary_loop.is_closed():
            # Its loop ended (the app stopped) before the summary was due: counted, not written.
            self._summary_loop = None
            self._suppressed, self._suppressed_level = 0, logging.NOTSET
        now = self._clock()
        if now - self._window_start >= self.WINDOW_SECONDS:
            self._summarise()
            self._window_start, self._written = now, 0
        if self._written < self.LINES_PER_WINDOW:
            self._written += 1
            return True
        self._suppressed += 1
        self._suppressed_level = max(self._suppressed_level, level)
        self.suppressed_total += 1
        self._summary_at_window_end()
        return False

    def _summary_at_window_end(self) -> None:
        """The summary is written when the window ends, not only at the next fault."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop: the next fault after the window writes it
        if self._summary_loop is loop:
            return
        self._summary_loop = loop
        delay = self._window_start + self.WINDOW_SECONDS - self._clock()
        loop.call_later(max(delay, 0.0), self._window_ended)

    def _window_ended(self) -> None:
        self._summary_loop = None
        if self._clock() - self._window_start >= self.WINDOW_SECONDS:
            self._summarise()
        elif self._suppressed:
            self._summary_at_window_end()

    def _summarise(self) -> None:
        suppressed, self._suppressed = self._suppressed, 0
        level, self._suppressed_level = self._suppressed_level, logging.NOTSET
        if suppressed:
            self.log.log(
                level,
                "%d more client faults suppressed in the last %ds (bad requests, bad packets)",
                suppressed,
                self.WINDOW_SECONDS,
                extra={CLIENT_FAULT: True},
            )


CLIENT_FAULTS = ClientFaultBudget()


def client_fault(
    logger: logging.Logger,
    message: str,
    *args: object,
    session_ended: bool = False,
    level: int = logging.WARNING,
) -> None:
    """One line (a WARNING unless `level` says less) about what a client did wrong, kept out
    of the admin view's recent errors. Within the process's budget, unless the fault ended the
    client's session (`session_ended`): one line per session is bounded by
    limits.handshakes_per_ip already, and names the session an operator may be asked about."""
    if not logger.isEnabledFor(level):
        CLIENT_FAULTS.total += 1
        return
    if session_ended:
        CLIENT_FAULTS.total += 1
    elif not CLIENT_FAULTS.admit(level):
        return
    logger.log(level, message, *args, extra={CLIENT_FAULT: True}, stacklevel=2)


def _one_line(exc: HttpProcessingError) -> str:
    """aiohttp's parser error on one line: what was wrong and the quoted bytes, masked, cut."""
    text = " ".join(redact(exc.message).split()).removesuffix(" ^")
    if len(text) > _QUOTED_MAX:
        text = text[:_QUOTED_MAX] + "..."
    return f"{exc.code} {type(exc).__name__}: {text}"


class ClientFaults(logging.Filter):
    """What a client sent wrong, as aiohttp's server and python-engineio log it, becomes one
    WARNING line without a traceback, marked as a client fault and within CLIENT_FAULTS.

    aiohttp logs each unparsable request (bad header bytes, a bad request line) at ERROR with a
    traceback, and python-engineio the first bad request of each kind at ERROR: neither is a
    fault of the server, and one line each would let a flood of them fill the logs.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._rewrite(record):
            return True
        setattr(record, CLIENT_FAULT, True)
        return CLIENT_FAULTS.admit(record.levelno)

    @staticmethod
    def _rewrite(record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and exc.code < 500:
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg, record.args = "bad HTTP request from %s: %s", (remote, _one_line(exc))
            record.exc_info, record.exc_text = None, None
        elif record.name == "engineio.server" and record.exc_info is None:
            message = record.getMessage()
            if record.levelno == logging.ERROR and message.endswith(_ENGINEIO_ONCE):
                record.msg, record.args = message.removesuffix(_ENGINEIO_ONCE), None
            else:
                return False
        else:
            return False
        if record.levelno > logging.WARNING:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def quiet_client_faults() -> None:
    """Install ClientFaults on aiohttp's server logger and python-engineio's, once a process."""
    for name in CLIENT_FAULT_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, ClientFaults) for f in logger.filters):
            logger.addFilter(ClientFaults())


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
