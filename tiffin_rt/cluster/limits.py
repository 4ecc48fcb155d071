"""Per-user counters that every node shares: open connections and the per-user event budget."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

# (hits allowed, window length in seconds), as ratelimit._items parses "50/second; 1000/minute".
Windows = Sequence[tuple[int, float]]


class SharedUserLimits(ABC):
    """Answers None whenever the shared store cannot be reached: the node then decides from
    its own counts, so a broker outage never refuses a user that the node alone would admit."""

    @abstractmethod
    def track(self, counts: Mapping[str, int]) -> None:
        """This node's own connections per user, to write back what the store lost."""

    @abstractmethod
    async def open_connection(self, user_id: str, maximum: int) -> bool | None:
        """Count one more connection of this user unless they have `maximum` on all nodes."""

    @abstractmethod
    async def close_connection(self, user_id: str) -> None: ...

    @abstractmethod
    async def allow_event(self, user_id: str, windows: Windows) -> bool | None:
        """Count one event of this user in every window, unless one of them is full."""

    @abstractmethod
    async def heartbeat(self) -> None:
        """This node is alive; its counts are written again if the store lost them. A node
        that stops beating has its counts ignored after `cluster.node_timeout`."""

    @abstractmethod
    async def leave(self) -> None:
        """This node stops: its counts stop counting at once."""
