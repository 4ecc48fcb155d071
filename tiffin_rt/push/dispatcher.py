"""Notifications to users with no live connection, pushed off the delivery path.

The router calls `deliver` in the listener's tick, with the live sinks: it only decides who is
offline (this node's /notifications rooms) and queues a job, never awaiting.
With several nodes every node hears every event but sees only its own connections: a node that
delivered a notification live claims it at once (one batched insert, users with devices only),
one that did not waits push.claim_delay before it claims; the first claim decides, so a user
connected to any node is not pushed. Worker tasks look the user's devices up, claim the event,
and queue one send per device. Jobs wait per user and are taken round-robin (fair.py): a user
whose push service hangs or keeps answering 429 holds at most push.user_in_flight workers, each
for at most push.timeout, while other users' pushes go out; never the router. A retry waits on
a timer with its place in the queue reserved. A full queue drops the job, counted and logged.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tiffin_rt.config import PushSettings
from tiffin_rt.core.events import NOTIFICATION, Event, notification_message
from tiffin_rt.core.push import PushSubscription, push_body
from tiffin_rt.db.push import StoredSubscription
from tiffin_rt.push.fair import FairQueue
from tiffin_rt.push.sender import Outcome

log = logging.getLogger(__name__)

# A full queue is logged at most this often (each drop is counted).
OVERFLOW_LOG_INTERVAL = 10.0


class Store(Protocol):
    async def for_user(self, user_id: str) -> list[StoredSubscription]: ...
    async def claim(self, event_id: int, user_id: str) -> bool: ...
    async def claim_for_connected(self, pairs: list[tuple[int, str]]) -> None: ...
    async def forget(self, subscription: StoredSubscription) -> None: ...
    async def pushed(self, subscription: StoredSubscription) -> None: ...
    async def still_registered(self, subscription: StoredSubscription) -> bool: ...


class Sender(Protocol):
    async def send(self, sub: PushSubscription, body: bytes) -> Outcome: ...


@dataclass(frozen=True, slots=True)
class _ForUser:
    event_id: int
    user_id: str
    message: dict[str, Any]
    due: float  # loop time: claimed no earlier (push.claim_delay)


@dataclass(frozen=True, slots=True)
class _ToDevice:
    event_id: int
    subscription: StoredSubscription
    body: bytes
    attempt: int


@dataclass(slots=True)
class PushStats:
    queued: int = 0
    skipped_online: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    removed: int = 0
    dropped: int = 0
    claimed_elsewhere: int = 0

    def describe(self) -> dict[str, int]:
        return {
            "queued": self.queued,
            "skippedOnline": self.skipped_online,
            "sent": self.sent,
            "retried": self.retried,
            "failed": self.failed,
            "removed": self.removed,
            "dropped": self.dropped,
            "claimedElsewhere": self.claimed_elsewhere,
        }


@dataclass
class PushDispatcher:
    """A router sink for `notification` events, and the workers that push them."""

    settings: PushSettings
    store: Store
    sender: Sender
    is_online: Callable[[str], bool]
    stats: PushStats = field(default_factory=PushStats)

    def __post_init__(self) -> None:
        self._queue: FairQueue[_ForUser | _ToDevice] = FairQueue(
            capacity=self.settings.queue_size,
            user_capacity=self.settings.user_queue_size,
            per_user=self.settings.user_in_flight,
        )
        self._timers: dict[asyncio.TimerHandle, str] = {}  # each retry's user
        self._overflow_logged = 0.0
        # (event, user) pairs delivered live here, to claim so that no other node pushes them.
        self._connected: list[tuple[int, str]] = []
        self._connected_ready = asyncio.Event()

    def describe(self) -> dict[str, int]:
        """For /healthz: the counters, and what waits and runs now."""
        return self.stats.describe() | {
            "backlog": self._queue.backlog,
            "retriesWaiting": self._queue.retained,
            "inFlight": self._queue.in_flight,
            "usersWaiting": self._queue.users_waiting,
        }

    # -- in the router's call: never awaits ---------------------------------------------------

    def deliver(self, events: Sequence[Event]) -> None:
        always = self.settings.when == "always"
        delay = 0.0 if always else self.settings.claim_delay
        due = asyncio.get_running_loop().time() + delay
        for event in events:
            if event.kind != NOTIFICATION:
                continue
            for room in event.rooms:
                if not room.startswith("user-"):
                    continue
                user_id = room[5:]
                if not always and self.is_online(user_id):
                    self.stats.skipped_online += 1
                    if delay > 0:
                        self._claim_connected(event.id, user_id)
                    continue
                job = _ForUser(event.id, user_id, notification_message(event), due)
                self._offer(user_id, job)

    def _claim_connected(self, event_id: int, user_id: str) -> None:
        if len(self._connected) >= self.settings.queue_size:
            self.stats.dropped += 1
            return
        self._connected.append((event_id, user_id))
        self._connected_ready.set()

    def _offer(self, user_id: str, job: _ForUser) -> None:
        full = self._queue.put(user_id, job)
        if full is None:
            self.stats.queued += 1
            return
        self._dropped(job.event_id, full)

    def _dropped(self, event_id: int, bound: str) -> None:
        self.stats.dropped += 1
        now = time.monotonic()
        if now - self._overflow_logged >= OVERFLOW_LOG_INTERVAL:
            self._overflow_logged = now
            log.warning(
                "push queue full (%s): push for event %s dropped (%d dropped so far)",
                bound,
                event_id,
                self.stats.dropped,
            )

    # -- workers -------------------------------------------------------------------------------

    async def work(self) -> None:
        """One worker; push.workers of them run for the app's lifetime."""
        while True:
            user_id, job = await self._queue.get()
            try:
                if isinstance(job, _ForUser):
                    await self._for_user(job)
                else:
                    await self._to_device(job)
            except Exception:
                log.exception("push for event %s failed", job.event_id)
            finally:
                self._queue.done(user_id)

    async def claim_connected(self) -> None:
        """Claims for users connected here, written in batches by one task."""
        while True:
            await self._connected_ready.wait()
            self._connected_ready.clear()
            pairs, self._connected = self._connected, []
            try:
                await self.store.claim_for_connected(pairs)
            except Exception as exc:  # the database is down: other nodes may push them
                log.warning("push: claiming %d live deliveries failed: %r", len(pairs), exc)

    async def _for_user(self, job: _ForUser) -> None:
        wait = job.due - asyncio.get_running_loop().time()
        if wait > 0:
            await asyncio.sleep(wait)
        devices = await self.store.for_user(job.user_id)
        if not devices:
            return
        if not await self.store.claim(job.event_id, job.user_id):
            self.stats.claimed_elsewhere += 1
            return
        if self.settings.when == "offline" and self.is_online(job.user_id):
            # Connected again while the claim waited: a reload, a reconnect. Its replay brings
            # the notification; the claim keeps the other nodes from pushing it.
            self.stats.skipped_online += 1
            return
        body = push_body(job.message)
        # One send per device, each in the user's turn: a device that hangs holds one slot.
        sends = [_ToDevice(job.event_id, device, body, 1) for device in devices]
        self._queue.put_first(job.user_id, sends)

    async def _to_device(self, job: _ToDevice) -> None:
        device = job.subscription
        if not await self.store.still_registered(device):
            # Unsubscribed while the push waited for its turn or a retry (a log-out, a shared
            # browser now someone else's): it is the old user's, never the device's new owner's.
            self.stats.failed += 1
            log.info(
                "push for event %s to subscription %s not sent: the device was unsubscribed",
                job.event_id,
                device.id,
            )
            return
        outcome = await self.sender.send(device.subscription, job.body)
        if outcome.delivered:
            self.stats.sent += 1
            await self.store.pushed(device)
            return
        if outcome.gone:
            await self.store.forget(device)
            # Counted once it is gone from the store: a reader of the count then never lists it.
            self.stats.removed += 1
            log.info("push subscription %s is gone (%s): removed", device.id, outcome.status)
            return
        if outcome.retryable and job.attempt < self.settings.max_attempts:
            delay = self._retry_delay(job.attempt, outcome.retry_after)
            self.stats.retried += 1
            log.info(
                "push to subscription %s answered %s; retry %d in %.1f s",
                device.id,
                outcome.status or outcome.error,
                job.attempt,
                delay,
            )
            self._queue.retain(device.user_id)  # this push's place in the queue, kept
            self._later(delay, _ToDevice(job.event_id, device, job.body, job.attempt + 1))
            return
        self.stats.failed += 1
        log.warning(
            "push for event %s to subscription %s failed after %d attempt(s): %s",
            job.event_id,
            device.id,
            job.attempt,
            outcome.status or outcome.error,
        )

    def _retry_delay(self, attempt: int, retry_after: float | None) -> float:
        """Retry-After when the service gives one, else exponential backoff with jitter; always
        within [retry_min_delay, retry_max_delay]."""
        low, high = self.settings.retry_min_delay, self.settings.retry_max_delay
        if retry_after is not None:
            return min(max(retry_after, low), high)
        backoff = low * 2 ** (attempt - 1)
        jittered: float = backoff * random.uniform(1.0, 1.5)
        return min(jittered, high)

    def _later(self, delay: float, job: _ToDevice) -> None:
        loop = asyncio.get_running_loop()

        def due() -> None:
            del self._timers[handle]
            self._queue.put_retained(job.subscription.user_id, job)
            self.stats.queued += 1

        handle = loop.call_later(delay, due)
        self._timers[handle] = job.subscription.user_id

    def close(self) -> None:
        """Shutdown: retries still waiting are abandoned."""
        for handle, user_id in self._timers.items():
            handle.cancel()
            self._queue.release_retained(user_id)
        self._timers.clear()
