"""The one interface a broker implements (encode/broadcaster's shape): channels of bytes.

What crosses a broker is ephemeral: at most once, in order per publisher, no history. A
message published while the broker is away is dropped (`BrokerUnavailable`); database events
never depend on it (each node reads them from the log).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tiffin_rt.cluster.limits import SharedUserLimits

# Called with (channel, message) for every message another node published; must not block.
Deliver = Callable[[str, bytes], None]


class BrokerUnavailable(Exception):
    """The broker cannot take a message now (down, reconnecting, too slow); it was dropped."""


class BrokerBackend(ABC):
    """One module per implementation; `tiffin_rt.cluster.open_backend` imports only the one
    configured."""

    @abstractmethod
    async def start(self, channels: Sequence[str], deliver: Deliver) -> None:
        """Subscribe and keep subscribed: reconnect, with backoff, for as long as it runs.
        Returns once started; `connected` tells whether the broker is reachable now."""

    @abstractmethod
    async def publish(self, channel: str, message: bytes) -> None:
        """Hand one message to the broker; BrokerUnavailable when it cannot."""

    @abstractmethod
    async def stop(self) -> None:
        """Unsubscribe and close every connection."""

    @property
    @abstractmethod
    def connected(self) -> bool: ...

    @property
    def reconnects(self) -> int:
        """How often the subscription was re-established after losing the broker."""
        return 0

    def user_limits(
        self, prefix: str, node_id: str, node_timeout: float
    ) -> SharedUserLimits | None:
        """Counters shared by every node (connections per user, per-user event budgets), where
        the broker can hold them; None: each node counts on its own."""
        return None
