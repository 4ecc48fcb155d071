"""The LISTEN connection: wake-ups from NOTIFY, catch-up reads from the log, reconnects."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Protocol

import asyncpg

from tiffin_rt.config import ChannelMapping
from tiffin_rt.core.events import Event
from tiffin_rt.core.parse import OrderIdFormat
from tiffin_rt.db import events_query
from tiffin_rt.db.channels import MalformedPayload, event_from_payload
from tiffin_rt.db.wakeups import event_from_wakeup

log = logging.getLogger(__name__)

CHANNEL = "tiffin_rt_events"
APPLICATION_NAME = "tiffin_rt-listener"

class Delivery(Protocol):
    """Where batches go (core.router.Router): handed over at once, in log order."""

    def deliver(self, events: Sequence[Event]) -> None: ...

    def settled(self) -> Awaitable[None]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenerOptions:
    heartbeat_interval: float = 5.0
    heartbeat_timeout: float = 3.0
    # Every catch-up read gives up after this: a peer gone silent mid-query would otherwise
    # hold the listener for good (the heartbeat runs only between reads).
    command_timeout: float = 5.0
    reconnect_min_delay: float = 0.1
    reconnect_max_delay: float = 10.0
    gap_timeout: float = 2.0
    late_event_window: float = 600.0
    batch_size: int = 5000


class _Verdict(enum.Enum):
    WAIT = "wait"  # a transaction that may fill the gap is still running
    ROLLED_BACK = "rolled back"  # the missing ids will never appear
    TIMED_OUT = "timed out"  # waited gap_timeout; deliver past it, watch for late rows


@dataclass(frozen=True, slots=True)
class _LateWatch:
    """An id delivered past after gap_timeout: its row is delivered late if it commits."""

    deadline: float  # late_event_window after the gap timed out
    xids: list[str]  # the transactions running when the gap was seen; one of them holds it


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
        delivery: Delivery,
        options: ListenerOptions | None = None,
        channels: Sequence[ChannelMapping] = (),
        order_ids: OrderIdFormat | None = None,
    ) -> None:
        """`order_ids`: how the orders id column prints ids, which channel payloads must match."""
        self._dsn = dsn
        self._channels = {c.channel: c for c in channels}
        self._order_ids = order_ids
        self._unlogged: list[Event] = []
        self.malformed_payloads = 0
        self._delivery = delivery
        # True only while _serve waits for a wake-up with nothing left to do: a NOTIFY carrying
        # the event after the cursor is then delivered from its callback, with no task between.
        self._idle = False
        self.delivered_from_callback = 0
        # For /metrics: carried events delivered by the task, reads of the log and the events
        # they delivered, holes in the ids (waited for, then rolled back or timed out).
        self.carried_delivered = 0
        self.log_reads = 0
        self.read_delivered = 0
        self.gaps: Counter[str] = Counter()
        self._options = options or ListenerOptions()
        self._wake = asyncio.Event()
        self._conn: asyncpg.Connection | None = None
        self._cursor: int | None = None
        self._gap: _Gap | None = None
        self._late: dict[int, _LateWatch] = {}
        self.late_delivered = 0
        self.late_abandoned = 0
        # Events carried by NOTIFY payloads, by id, not delivered yet; the log read is skipped
        # while they follow the cursor without a hole. _must_read: a wake-up carried no event.
        self._carried: dict[int, Event] = {}
        self._must_read = True
        self._connected = asyncio.Event()
        self._lost = asyncio.Event()
        self.reconnects = 0

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def late_watched(self) -> int:
        """Ids skipped after gap_timeout whose transaction may still commit."""
        return len(self._late)

    @property
    def cursor(self) -> int | None:
        """The id of the last event delivered (None before the first connect)."""
        return self._cursor

    @property
    def floor(self) -> int | None:
        """Every event delivered from now on has a larger id (late ones included); None before
        the first connect."""
        if self._cursor is None:
            return None
        return min(self._cursor, min(self._late) - 1) if self._late else self._cursor

    @property
    def waiting_for(self) -> int | None:
        """The missing event id that later events are held back for (None when none is)."""
        return self._gap.first_missing if self._gap is not None else None

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
            command_timeout=self._options.command_timeout,
            server_settings={"application_name": APPLICATION_NAME},
        )
        self._lost.clear()
        conn.add_termination_listener(lambda _c: self._on_lost())
        await conn.add_listener(CHANNEL, self._on_notify)
        for channel in self._channels:
            await conn.add_listener(channel, self._on_channel)
        self._conn = conn
        self._must_read = True
        if self._cursor is None:
            self._cursor = await events_query.last_event_id(conn)
            log.info("event listener connected; live from event %d", self._cursor)
        else:
            log.info("event listener reconnected; catching up after event %d", self._cursor)
        self._connected.set()
        self._wake.set()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        event = event_from_wakeup(str(payload))
        if event is None or len(self._carried) >= self._options.batch_size:
            self._must_read = True
        elif self._cursor is None or event.id > self._cursor:
            if self._idle and self._cursor is not None and event.id == self._cursor + 1:
                # The next id, nothing in flight: deliver now (ids are unique, so nothing in
                # the log can come between it and the cursor).
                self._cursor = event.id
                self.delivered_from_callback += 1
                self._delivery.deliver((event,))
                return
            self._carried[event.id] = event
        self._idle = False
        self._wake.set()

    def _on_channel(self, _conn: object, _pid: int, channel: str, payload: object) -> None:
        """A backend's own NOTIFY: best effort, delivered as it comes, never replayed."""
        try:
            event = event_from_payload(self._channels[channel], str(payload), self._order_ids)
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
        self._idle = False
        self._wake.set()

    def _on_lost(self) -> None:
        self._idle = False
        self._lost.set()
        self._wake.set()

    async def _close(self) -> None:
        self._idle = False
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
            self._idle = self._nothing_pending()
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancel that
            # lands as the wake-up arrives, and the listener would then never stop.
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
            finally:
                self._idle = False
            if self._lost.is_set() or conn.is_closed():
                raise ConnectionError("connection terminated")
            self._wake.clear()
            self._deliver_carried()
            if self._must_read or self._carried or self._gap is not None or self._late:
                self._must_read = False
                await self._catch_up(conn)
                self._forget_carried()
            if self._unlogged:
                unlogged, self._unlogged = self._unlogged, []
                self._delivery.deliver(unlogged)
            # A sink that had to await holds later batches back: read no further until then.
            await self._delivery.settled()
            now = time.monotonic()
            if now - last_heartbeat >= self._options.heartbeat_interval:
                await asyncio.wait_for(conn.fetchval("SELECT 1"), self._options.heartbeat_timeout)
                last_heartbeat = now

    def _nothing_pending(self) -> bool:
        """Nothing to read, wait for or deliver: the next carried event may go straight out."""
        return (
            self._cursor is not None
            and self._conn is not None
            and not self._must_read
            and not self._carried
            and self._gap is None
            and not self._late
            and not self._unlogged
            and not self._lost.is_set()
            and not self._wake.is_set()
        )

    def _deliver_carried(self) -> None:
        """Deliver the carried events that follow the cursor without a hole, without reading
        the log: ids are unique, so nothing in the log can come between them. The rest waits
        for the log read (an event too big to carry, a gap, a wake-up after a reconnect)."""
        if not self._carried or self._cursor is None:
            return
        ready: list[Event] = []
        next_id = self._cursor + 1
        while (event := self._carried.pop(next_id, None)) is not None:
            ready.append(event)
            next_id += 1
        if ready:
            self._cursor = ready[-1].id
            self.carried_delivered += len(ready)
            self._delivery.deliver(ready)

    def _forget_carried(self) -> None:
        """Drop carried events the log read has delivered (or skipped as late)."""
        cursor = self._cursor
        if cursor is not None and self._carried:
            self._carried = {i: e for i, e in self._carried.items() if i > cursor}

    async def _catch_up(self, conn: asyncpg.Connection) -> None:
        """Read everything after the cursor, deliver the gap-free prefix, repeat while full."""
        assert self._cursor is not None
        if self._late:
            await self._deliver_late(conn)
        while True:
            events = await events_query.events_after(conn, self._cursor, self._options.batch_size)
            self.log_reads += 1
            if not events:
                self._gap = None
                return
            ready = await self._gap_free_prefix(conn, events)
            if ready:
                self._cursor = ready[-1].id
                self.read_delivered += len(ready)
                self._delivery.deliver(ready)
                await self._delivery.settled()
            if len(ready) < len(events) or len(events) < self._options.batch_size:
                return

    async def _gap_free_prefix(self, conn: asyncpg.Connection, events: list[Event]) -> list[Event]:
        assert self._cursor is not None
        expected = self._cursor + 1
        for index, event in enumerate(events):
            if event.id == expected:
                expected += 1
                continue
            verdict = await self._gap_verdict(conn, expected)
            if verdict is not _Verdict.WAIT:
                if verdict is _Verdict.TIMED_OUT:
                    # Its transaction may still commit: watch for the rows, deliver them late.
                    watch = _LateWatch(
                        deadline=time.monotonic() + self._options.late_event_window,
                        xids=self._gap.xids if self._gap is not None else [],
                    )
                    for missing in range(expected, event.id):
                        self._late[missing] = watch
                self._gap = None
                expected = event.id + 1
                continue
            return events[:index]
        self._gap = None
        return events

    async def _gap_verdict(self, conn: asyncpg.Connection, first_missing: int) -> _Verdict:
        """A gap is final once every transaction running when it was seen has ended.

        An id is taken at insert, so the transaction that took a missing id was running when
        a later id was seen committed: once none of those is running, the row never comes.
        """
        now = time.monotonic()
        gap = self._gap
        if gap is None or gap.first_missing != first_missing:
            xids = await events_query.running_transactions(conn)
            gap = _Gap(first_missing, xids, now + self._options.gap_timeout)
            self._gap = gap
            self.gaps["seen"] += 1
            if not xids:
                # Nothing was running: the ids were rolled back. Re-read once to be sure a
                # commit between our read and the snapshot is not mistaken for a rollback.
                return await self._rolled_back_or_wait(conn, first_missing)
            return _Verdict.WAIT
        if now >= gap.deadline:
            self.gaps["timed_out"] += 1
            log.warning(
                "event %d still missing after %.1fs; delivering past it",
                first_missing,
                self._options.gap_timeout,
            )
            return _Verdict.TIMED_OUT
        if await events_query.any_still_running(conn, gap.xids):
            return _Verdict.WAIT
        return await self._rolled_back_or_wait(conn, first_missing)

    async def _rolled_back_or_wait(self, conn: asyncpg.Connection, event_id: int) -> _Verdict:
        found = await events_query.events_by_id(conn, [event_id])
        if found:
            return _Verdict.WAIT
        self.gaps["rolled_back"] += 1
        return _Verdict.ROLLED_BACK

    async def _deliver_late(self, conn: asyncpg.Connection) -> None:
        """Deliver watched rows that have appeared; stop watching the rest once no transaction
        that could hold them is running (rolled back), or, logged and counted, once
        late_event_window has passed."""
        xids = sorted({x for watch in self._late.values() for x in watch.xids})
        # Asked before the read: a holder that ended before this answer is visible to the read.
        running = set(await events_query.still_running(conn, xids))
        late = await events_query.events_by_id(conn, self._late)
        if late:
            for event in late:
                self._late.pop(event.id, None)
            self.late_delivered += len(late)
            log.warning(
                "delivering %d late event(s) out of order: %s", len(late), [e.id for e in late]
            )
            self._delivery.deliver(late)
        now = time.monotonic()
        abandoned: list[int] = []
        for event_id, watch in list(self._late.items()):
            if running.isdisjoint(watch.xids):
                del self._late[event_id]  # rolled back: the row never comes
            elif watch.deadline <= now:
                del self._late[event_id]
                abandoned.append(event_id)
        if abandoned:
            self.late_abandoned += len(abandoned)
            log.warning(
                "stopped watching for event(s) %s: the transaction holding them is still open"
                " after database.late_event_window (%gs); if it commits, the rows stay in the"
                " log but reach no client live",
                abandoned,
                self._options.late_event_window,
            )
