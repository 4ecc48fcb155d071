"""Rate limits shared by every transport: connection attempts, events, abuse strikes, users."""

from __future__ import annotations

import bisect
import time
from collections import Counter
from collections.abc import Callable, Hashable

from limits import RateLimitItem, parse_many

from tiffin_rt import metrics
from tiffin_rt.cluster.limits import SharedUserLimits
from tiffin_rt.config import LimitsSettings

# How often windows whose hits have all expired are dropped (seconds).
SWEEP_INTERVAL = 60.0


def _items(rate: str) -> list[tuple[int, float]]:
    """("30/minute; 5/second") -> [(30, 60.0), (5, 1.0)]: hits allowed per window length."""
    parsed: list[RateLimitItem] = list(parse_many(rate))
    return [(item.amount, float(item.get_expiry())) for item in parsed]


def rate_windows(rate: str) -> list[tuple[int, float]]:
    """A rate string as MovingWindows.hit takes it (for limits kept outside RateLimits)."""
    return _items(rate)


class MovingWindows:
    """Exact moving windows: the hit times of the last window, per key, in a plain list.

    Replaces the `limits` library's MemoryStorage, which keeps an object, a lock and (once the
    key has been idle) an empty list for every key forever, and sweeps every key from a thread
    every 10 ms while hits come in. Here a key whose hits have all expired is dropped, at the
    latest SWEEP_INTERVAL after its window ended: per-connection keys do not outlive it.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._hits: dict[tuple[Hashable, int, float], list[float]] = {}
        self._next_sweep = clock() + SWEEP_INTERVAL

    def __len__(self) -> int:
        return len(self._hits)

    def hit(self, windows: list[tuple[int, float]], key: Hashable) -> bool:
        """Count one hit in every window, unless one of them is full (then count none)."""
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep(now)
        keyed = [((key, amount, seconds), amount, seconds) for amount, seconds in windows]
        for window_key, amount, seconds in keyed:
            hits = self._hits.get(window_key)
            if hits is None:
                continue
            expired = bisect.bisect_right(hits, now - seconds)
            if expired:
                del hits[:expired]
            if len(hits) >= amount:
                return False
        for window_key, _, _ in keyed:
            self._hits.setdefault(window_key, []).append(now)
        return True

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + SWEEP_INTERVAL
        stale = [k for k, hits in self._hits.items() if not hits or hits[-1] <= now - k[2]]
        for key in stale:
            del self._hits[key]


def _counted(allowed: bool, limit: str) -> bool:
    """A refusal is counted for /metrics under the limit's config key."""
    if not allowed:
        metrics.rate_limited(limit)
    return allowed


class RateLimits:
    """One per process. Per connection and per address, counters are this node's. Per user
    (connections, the event budget) they are the cluster's when `shared` is given (Redis);
    while the shared store is unreachable, and without one, each node counts on its own."""

    def __init__(self, settings: LimitsSettings, shared: SharedUserLimits | None = None) -> None:
        self._settings = settings
        self._windows = MovingWindows()
        self._connect = _items(settings.connect_per_ip)
        self._handshakes = _items(settings.handshakes_per_ip)
        self._events = _items(settings.events_per_connection)
        self._overrides = {name: _items(rate) for name, rate in settings.event_overrides.items()}
        self._per_user = _items(settings.events_per_user)
        self._strikes = _items(settings.abuse_strikes)
        self._users: Counter[str] = Counter()
        self._shared = shared
        if shared is not None:
            shared.track(self._users)

    @property
    def settings(self) -> LimitsSettings:
        return self._settings

    @property
    def tracked_keys(self) -> int:
        """Windows currently kept in memory (each a key's hit times)."""
        return len(self._windows)

    def allow_connect(self, address: str) -> bool:
        """A new connection (Socket.IO namespace or HTTP stream) from this address."""
        return _counted(self._windows.hit(self._connect, ("connect", address)), "connect_per_ip")

    def allow_handshake(self, address: str) -> bool:
        """A new Engine.IO session, before any namespace (and so before any token)."""
        allowed = self._windows.hit(self._handshakes, ("handshake", address))
        return _counted(allowed, "handshakes_per_ip")

    def allow_event(self, connection: str, event: str) -> bool:
        """One client event on one connection; each event name has its own budget."""
        allowed = self._windows.hit(
            self._overrides.get(event, self._events), ("event", connection, event)
        )
        return _counted(allowed, "events_per_connection")

    async def allow_user_event(self, user_id: str) -> bool:
        """One event of this user on any connection: more connections buy no more server time."""
        if self._shared is not None:
            allowed = await self._shared.allow_event(user_id, self._per_user)
            if allowed is not None:
                return _counted(allowed, "events_per_user")
        return _counted(
            self._windows.hit(self._per_user, ("user-events", user_id)), "events_per_user"
        )

    def strike(self, connection: str) -> bool:
        """Record a refused event; True once the connection has been refused too often."""
        return not _counted(
            self._windows.hit(self._strikes, ("strike", connection)), "abuse_strikes"
        )

    async def open_user_connection(self, user_id: str) -> bool:
        """Count a connection of this user, unless the user already has the maximum open."""
        maximum = self._settings.connections_per_user
        if self._users[user_id] >= maximum:
            return _counted(False, "connections_per_user")
        if self._shared is not None:
            allowed = await self._shared.open_connection(user_id, maximum)
            if allowed is False or (allowed is None and self._users[user_id] >= maximum):
                return _counted(False, "connections_per_user")
        self._users[user_id] += 1
        return True

    async def close_user_connection(self, user_id: str) -> None:
        self._users[user_id] -= 1
        if self._users[user_id] <= 0:
            del self._users[user_id]
        if self._shared is not None:
            await self._shared.close_connection(user_id)

    def user_connections(self, user_id: str) -> int:
        return self._users[user_id]
