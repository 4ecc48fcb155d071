"""The LISTEN connection: wake-ups from NOTIFY, catch-up reads from the log, reconnects."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import asyncpg

from tiffin_rt.config import ChannelMapping
from tiffin_rt.core.events import Event
from tiffin_rt.db import events_query
from tiffin_rt.db.channels import MalformedPayload, event_from_payload

log = logging.getLogger(__name__)

CHANNEL = "tiffin_rt_events"
APPLICATION_NAME = "tiffin_rt-listener"

Deliver = Callable[[Sequence[Event]], Awaitable[None]]


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenerOptions:
    heartbeat_interval: float = 5.0
    heartbeat_timeout: float = 3.0
    reconnect_min_delay: float = 0.1
    reconnect_max_delay: float = 10.0
    gap_timeout: float = 2.0
    late_watch_seconds: float = 60.0
    batch_size: int = 5000


class _Gap:
    """Ids below a visible row that are not visible yet: an open transaction, or a rollback."""

    def __init__(self, first_missing: int, xids: list[str], deadline: float) -> None:
        self.first_missing = first_missing
        self.xids = xids
        self.deadline = deadline


class EventListener:
    """Delivers every committed log row exactly once and in id order, across reconnects."""

    def __init__(
        self,
        *,
        dsn: str,
        deliver: Deliver,
        options: ListenerOptions | None = None,
        channels: Sequence[ChannelMapping] = (),
    ) -> None:
        self._dsn = dsn
        self._channels = {c.channel: c for c in channels}
        self._unlogged: list[Event] = []
        self.malformed_payloads = 0
        self._deliver = deliver
        self._options = options or ListenerOptions()
        self._wake = asyncio.Event()
        self._conn: asyncpg.Connection | None = None
        self._cursor: int | None = None
        self._gap: _Gap | None = None
        self._late: dict[int, float] = {}
        self._connected = asyncio.Event()
        self._lost = asyncio.Event()
        self.reconnects = 0

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def cursor(self) -> int | None:
        """The id of the last event delivered (None before the first connect)."""
        return self._cursor

    async def wait_connected(self) -> None:
        await self._connected.wait()

    async def run(self) -> None:
        """Run until cancelled: connect, listen, catch up, and reconnect with backoff."""
        attempt = 0
        while True:
            try:
                await self._connect()
                attempt = 0
                await self._serve()
            except asyncio.CancelledError:
                await self._close()
                raise
            except (
                OSError,
                asyncpg.PostgresError,
                asyncpg.InterfaceError,
                TimeoutError,
                ConnectionError,
            ) as exc:
                was_connected = self.connected
                await self._close()
                attempt += 1
                delay = min(
                    self._options.reconnect_max_delay,
                    self._options.reconnect_min_delay * 2 ** min(attempt - 1, 16),
                )
                delay *= random.uniform(0.5, 1.0)
                level = logging.WARNING if was_connected or attempt == 1 else logging.DEBUG
                log.log(
                    level,
                    "event listener lost its connection (%s); retrying in %.2fs",
                    exc.__class__.__name__ + (f": {exc}" if str(exc) else ""),
                    delay,
                )
                self.reconnects += 1
                await asyncio.sleep(delay)
            except Exception:
                log.exception("event listener failed; reconnecting")
                await self._close()
                self.reconnects += 1
                await asyncio.sleep(self._options.reconnect_min_delay)

    async def _connect(self) -> None:
        conn = await asyncpg.connect(
            self._dsn,
            timeout=self._options.heartbeat_timeout * 3,
            server_settings={"application_name": APPLICATION_NAME},
        )
        self._lost.clear()
        conn.add_termination_listener(lambda _c: self._on_lost())
        await conn.add_listener(CHANNEL, self._on_notify)
        for channel in self._channels:
            await conn.add_listener(channel, self._on_channel)
        self._conn = conn
        if self._cursor is None:
            self._cursor = await events_query.last_event_id(conn)
            log.info("event listener connected; live from event %d", self._cursor)
        else:
            log.info("event listener reconnected; catching up after event %d", self._cursor)
        self._connected.set()
        self._wake.set()

    def _on_notify(self, *_args: object) -> None:
        self._wake.set()

    def _on_channel(self, _conn: object, _pid: int, channel: str, payload: object) -> None:
        """A backend's own NOTIFY: best effort, delivered as it comes, never replayed."""
        try:
            event = event_from_payload(self._channels[channel], str(payload))
        except MalformedPayload as exc:
            self.malformed_payloads += 1
            log.warning(
                "ignored a malformed payload on channel %s: %s (%d so far)",
                channel,
                exc,
                self.malformed_payloads,
            )
            return
        self._unlogged.append(event)
        self._wake.set()

    def _on_lost(self) -> None:
        self._lost.set()
        self._wake.set()

    async def _close(self) -> None:
        self._connected.clear()
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()

    async def _serve(self) -> None:
        assert self._conn is not None
        conn = self._conn
        last_heartbeat = time.monotonic()
        while True:
            timeout = self._options.heartbeat_interval
            if self._gap is not None:
                timeout = min(timeout, 0.005)
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancel that
            # lands as the wake-up arrives, and the listener would then never stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            if self._lost.is_set() or conn.is_closed():
                raise ConnectionError("connection terminated")
            self._wake.clear()
            await self._catch_up(conn)
            if self._unlogged:
                unlogged, self._unlogged = self._unlogged, []
                await self._deliver(unlogged)
            now = time.monotonic()
            if now - last_heartbeat >= self._options.heartbeat_interval:
                await asyncio.wait_for(conn.fetchval("SELECT 1"), self._options.heartbeat_timeout)
                last_heartbeat = now

    async def _catch_up(self, conn: asyncpg.Connection) -> None:
        """Read everything after the cursor, deliver the gap-free prefix, repeat while full."""
        assert self._cursor is not None
        if self._late:
            await self._deliver_late(conn)
        while True:
            events = await events_query.events_after(conn, self._cursor, self._options.batch_size)
            if not events:
                self._gap = None
                return
            ready = await self._gap_free_prefix(conn, events)
            if ready:
                self._cursor = ready[-1].id
                await self._deliver(ready)
            if len(ready) < len(events) or len(events) < self._options.batch_size:
                return

    async def _gap_free_prefix(self, conn: asyncpg.Connection, events: list[Event]) -> list[Event]:
        assert self._cursor is not None
        expected = self._cursor + 1
        for index, event in enumerate(events):
            if event.id == expected:
                expected += 1
                continue
            if await self._gap_is_final(conn, expected):
                for missing in range(expected, event.id):
                    self._late[missing] = time.monotonic() + self._options.late_watch_seconds
                self._gap = None
                expected = event.id + 1
                continue
            return events[:index]
        self._gap = None
        return events

    async def _gap_is_final(self, conn: asyncpg.Connection, first_missing: int) -> bool:
        """A gap is final once every transaction running when it was seen has ended."""
        now = time.monotonic()
        gap = self._gap
        if gap is None or gap.first_missing != first_missing:
            xids = await events_query.running_transactions(conn)
            gap = _Gap(first_missing, xids, now + self._options.gap_timeout)
            self._gap = gap
            if not xids:
                # Nothing was running: the ids were rolled back. Re-read once to be sure a
                # commit between our read and the snapshot is not mistaken for a rollback.
                return await self._still_missing(conn, first_missing)
            return False
        if now >= gap.deadline:
            log.warning(
                "event %d still missing after %.1fs; delivering past it",
                first_missing,
                self._options.gap_timeout,
            )
            return True
        if await events_query.any_still_running(conn, gap.xids):
            return False
        return await self._still_missing(conn, first_missing)

    async def _still_missing(self, conn: asyncpg.Connection, event_id: int) -> bool:
        found = await events_query.events_by_id(conn, [event_id])
        return not found

    async def _deliver_late(self, conn: asyncpg.Connection) -> None:
        now = time.monotonic()
        self._late = {i: deadline for i, deadline in self._late.items() if deadline > now}
        if not self._late:
            return
        late = await events_query.events_by_id(conn, self._late)
        if late:
            for event in late:
                self._late.pop(event.id, None)
            log.warning(
                "delivering %d late event(s) out of order: %s", len(late), [e.id for e in late]
            )
            await self._deliver(late)
