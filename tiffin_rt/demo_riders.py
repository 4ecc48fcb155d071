"""Demo riders for `tiffin-rt demo simulate`: each rides its order from the kitchen to the
customer's door, sending `locationUpdate` over Socket.IO as a rider's app would."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import socketio

from tiffin_rt.auth import mint_token
from tiffin_rt.config import AuthSettings
from tiffin_rt.demo_map import Point, heading, route

log = logging.getLogger(__name__)

NAMESPACE = "/notifications"
# Riders the simulator assigns to an order that has none when it is ready.
DEMO_RIDERS = ("rita", "ravi")


class RiderUnreachable(Exception):
    """The server did not take the rider's connection; the message says why."""


class DemoRiders:
    """One Socket.IO connection per rider, opened when it first rides."""

    def __init__(self, url: str, auth: AuthSettings, *, report: Callable[[str], None]) -> None:
        self._url = url
        self._auth = auth
        self._report = report
        self._clients: dict[str, socketio.AsyncClient] = {}

    async def _client(self, rider: str) -> socketio.AsyncClient:
        client = self._clients.get(rider)
        if client is not None and client.connected:
            return client
        client = socketio.AsyncClient(reconnection=True)
        token = mint_token(self._auth, sub=rider, role="rider", ttl=3600)
        try:
            await client.connect(
                self._url,
                namespaces=[NAMESPACE],
                auth={"token": token},
                transports=["websocket"],
                wait_timeout=5,
            )
        except (socketio.exceptions.ConnectionError, OSError) as exc:
            raise RiderUnreachable(f"rider {rider} cannot reach {self._url}: {exc}") from None
        self._clients[rider] = client
        return client

    async def ride(
        self, order_id: str, rider: str, start: Point, end: Point, *, steps: int, pace: float
    ) -> int:
        """Send the rider's position every `pace` seconds along the route; the positions sent."""
        client = await self._client(rider)
        points = route(start, end, steps)
        sent = 0
        for index, point in enumerate(points):
            if index:
                await asyncio.sleep(pace)
            ahead = points[min(index + 1, len(points) - 1)]
            update: dict[str, Any] = {
                "orderId": order_id,
                "lat": point[0],
                "lng": point[1],
                "heading": heading(point, ahead) if ahead != point else None,
                "speed": 6.0,
                "accuracy": 10,
                "timestamp": int(time.time() * 1000),
            }
            ack = await client.call("locationUpdate", update, namespace=NAMESPACE, timeout=5)
            if not ack.get("ok"):
                error = ack.get("error") or {}
                self._report(f"order {order_id}: rider {rider} refused: {error.get('message')}")
                if error.get("code") != "rate_limited":
                    return sent
                continue
            sent += 1
            eta = ack.get("eta")
            left = f", about {round(eta['estimatedSeconds'] / 60)} min away" if eta else ""
            self._report(f"order {order_id}: rider {rider} at {point[0]:.4f}, {point[1]:.4f}{left}")
        return sent

    async def close(self) -> None:
        for client in self._clients.values():
            await client.disconnect()
        self._clients.clear()
