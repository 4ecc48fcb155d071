"""No broker (`cluster.broker: ""`): one node, nothing crosses processes."""

from __future__ import annotations

from collections.abc import Sequence

from tiffin_rt.cluster.backend import BrokerBackend, Deliver


class LocalBackend(BrokerBackend):
    """Every message stays in this process; the bus has already delivered it here."""

    async def start(self, channels: Sequence[str], deliver: Deliver) -> None:
        return None

    async def publish(self, channel: str, message: bytes) -> None:
        return None

    async def stop(self) -> None:
        return None

    @property
    def connected(self) -> bool:
        return True
