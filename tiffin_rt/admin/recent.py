"""The last WARNING and ERROR lines of the process, kept for the admin view (tokens masked).

What clients did wrong (logs.ClientFaults, logs.client_fault) is counted there, not kept here:
a flood of bad requests would push the server's own lines out of the ring."""

from __future__ import annotations

import logging
from collections import deque
from datetime import UTC, datetime
from typing import Any

from tiffin_rt.logcontext import CONNECTION_ID, REQUEST_ID
from tiffin_rt.logs import is_client_fault, redact

KEPT = 50


class RecentErrors(logging.Handler):
    """A ring of the last KEPT lines at WARNING or above, newest last, client faults left out."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: deque[dict[str, Any]] = deque(maxlen=KEPT)

    def emit(self, record: logging.LogRecord) -> None:
        if is_client_fault(record):
            return
        try:
            line: dict[str, Any] = {
                "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                    timespec="milliseconds"
                ),
                "level": record.levelname,
                "logger": record.name,
                "message": redact(record.getMessage())[:2000],
            }
            for key, var in (("requestId", REQUEST_ID), ("connectionId", CONNECTION_ID)):
                value = var.get()
                if value is not None:
                    line[key] = value
            if record.exc_info and record.exc_info[0] is not None:
                line["exception"] = record.exc_info[0].__name__
            self.lines.append(line)
        except Exception:  # a log handler never raises into the code that logged
            self.handleError(record)


_installed: RecentErrors | None = None


def recent_errors() -> RecentErrors:
    """The process's ring, on the root logger (installed once)."""
    global _installed
    if _installed is None:
        _installed = RecentErrors()
        logging.getLogger().addHandler(_installed)
    return _installed
