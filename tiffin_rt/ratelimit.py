"""Rate limits shared by every transport: connection attempts, events, abuse strikes, users."""

from __future__ import annotations

from collections import Counter

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from tiffin_rt.config import LimitsSettings


def _items(rate: str) -> list[RateLimitItem]:
    return list(parse_many(rate))


class RateLimits:
    """One per process; all counters are in memory (a client's limits are per server node)."""

    def __init__(self, settings: LimitsSettings) -> None:
        self._settings = settings
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._connect = _items(settings.connect_per_ip)
        self._handshakes = _items(settings.handshakes_per_ip)
        self._events = _items(settings.events_per_connection)
        self._overrides = {name: _items(rate) for name, rate in settings.event_overrides.items()}
        self._strikes = _items(settings.abuse_strikes)
        self._users: Counter[str] = Counter()

    @property
    def settings(self) -> LimitsSettings:
        return self._settings

    def _hit(self, items: list[RateLimitItem], *keys: str) -> bool:
        # Test every window first so a refused attempt does not consume the others.
        if not all(self._limiter.test(item, *keys) for item in items):
            return False
        return all([self._limiter.hit(item, *keys) for item in items])

    def allow_connect(self, address: str) -> bool:
        """A new connection (Socket.IO namespace or HTTP stream) from this address."""
        return self._hit(self._connect, "connect", address)

    def allow_handshake(self, address: str) -> bool:
        """A new Engine.IO session, before any namespace (and so before any token)."""
        return self._hit(self._handshakes, "handshake", address)

    def allow_event(self, connection: str, event: str) -> bool:
        """One client event on one connection; each event name has its own budget."""
        return self._hit(self._overrides.get(event, self._events), "event", connection, event)

    def strike(self, connection: str) -> bool:
        """Record a refused event; True once the connection has been refused too often."""
        return not self._hit(self._strikes, "strike", connection)

    def open_user_connection(self, user_id: str) -> bool:
        """Count a connection of this user, unless the user already has the maximum open."""
        if self._users[user_id] >= self._settings.connections_per_user:
            return False
        self._users[user_id] += 1
        return True

    def close_user_connection(self, user_id: str) -> None:
        self._users[user_id] -= 1
        if self._users[user_id] <= 0:
            del self._users[user_id]

    def user_connections(self, user_id: str) -> int:
        return self._users[user_id]
