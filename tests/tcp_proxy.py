"""A TCP proxy in front of PostgreSQL whose connections can be frozen: a silently dead peer."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit


class FreezableProxy:
    """Forwards 127.0.0.1:<port> to PostgreSQL; `freeze()` stops every open connection dead.

    A frozen connection stays open on both sides but carries no byte either way, as when a
    peer's host vanishes or a firewall drops the flow: nobody gets a reset or an EOF. New
    connections are closed at once until `thaw()`, then forwarded: a client that drops the
    dead connections recovers.
    """

    def __init__(self, target_dsn: str) -> None:
        parts = urlsplit(target_dsn)
        query = parse_qs(parts.query)
        socket_dir = query.pop("host", [""])[0]
        port = parts.port or 5432
        # the embedded server listens on a Unix socket only (host=/dir in the query string)
        self._unix_path = f"{socket_dir}/.s.PGSQL.{port}" if socket_dir.startswith("/") else None
        self._target = (parts.hostname or "127.0.0.1", port)
        self._parts = parts._replace(query=urlencode(query, doseq=True))
        self._server: asyncio.Server | None = None
        self._open: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._refusing = False
        self.port = 0

    @property
    def dsn(self) -> str:
        """The target's dsn with the proxy as its host."""
        auth = self._parts.netloc.rpartition("@")[0]
        netloc = f"{auth}@127.0.0.1:{self.port}" if auth else f"127.0.0.1:{self.port}"
        return urlunsplit(self._parts._replace(netloc=netloc))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def freeze(self) -> int:
        """Stop forwarding on every open connection, for good, and close new ones at once
        (the server is gone) until `thaw()`; returns how many were frozen."""
        self._refusing = True
        for link in self._open:
            link.frozen = True
        return len(self._open)

    def thaw(self) -> None:
        """New connections are forwarded again; the frozen ones stay dead."""
        self._refusing = False

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._open):
            link.close()  # both ends see EOF: the pumps end
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        if self._refusing:
            client_w.close()
            self._tasks.discard(task)
            return
        try:
            if self._unix_path is not None:
                server_r, server_w = await asyncio.open_unix_connection(self._unix_path)
            else:
                server_r, server_w = await asyncio.open_connection(*self._target)
        except OSError:
            client_w.close()
            self._tasks.discard(task)
            return
        link = _Link(client_w, server_w)
        self._open.add(link)
        try:
            await asyncio.gather(link.pump(client_r, server_w), link.pump(server_r, client_w))
        finally:
            self._open.discard(link)
            self._tasks.discard(task)
            link.close()


class _Link:
    def __init__(self, client_w: asyncio.StreamWriter, server_w: asyncio.StreamWriter) -> None:
        self.frozen = False
        self._writers = (client_w, server_w)

    async def pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                if self.frozen:
                    continue  # swallowed: the peer never hears of it
                writer.write(data)
                await writer.drain()
        if not self.frozen:
            self.close()

    def close(self) -> None:
        for writer in self._writers:
            writer.close()
