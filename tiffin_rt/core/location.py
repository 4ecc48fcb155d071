"""Rider positions: what a rider's `locationUpdate` may hold, and the `riderLocation` sent on.

Every field a client sends is checked here, one way for every transport: numbers are JSON
numbers (never strings or booleans), finite (Python's json module, the fallback parser, reads
`NaN` and `Infinity` and turns `1e400` into infinity), in range; nothing unknown is accepted.
The ETA is a straight-line estimate at a configured speed, and named so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tiffin_rt.core.errors import ClientError
from tiffin_rt.core.events import iso_utc
from tiffin_rt.core.parse import InvalidOrderId, OrderIdFormat, shown

# Epoch milliseconds a JavaScript Date can hold (±8.64e15); beyond it no real clock.
_MAX_EPOCH_MS = 8.64e15
_SHOWN = 24
_FIELDS = frozenset({"orderId", "lat", "lng", "heading", "speed", "accuracy", "timestamp"})
EARTH_RADIUS_M = 6_371_008.8


class InvalidLocation(ClientError):
    """A locationUpdate whose fields are not what the contract says; the message names the field."""

    def __init__(self, message: str) -> None:
        super().__init__("invalid_payload", message)


@dataclass(frozen=True, slots=True)
class LocationUpdate:
    """One checked position of a rider for an order."""

    order_id: str
    lat: float
    lng: float
    heading: float | None
    speed: float | None
    accuracy: float | None
    recorded_at: float  # epoch seconds


@dataclass(frozen=True, slots=True)
class Destination:
    lat: float
    lng: float


def _number(data: dict[str, Any], name: str, low: float, high: float) -> float:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidLocation(
            f"{name}: a JSON number from {low:g} to {high:g} (got {shown(value)})"
        )
    number = float(value) if isinstance(value, float) or abs(value) < 2**53 else math.inf
    if not math.isfinite(number) or not low <= number <= high:
        raise InvalidLocation(
            f"{name}: a finite number from {low:g} to {high:g} (got {shown(value)})"
        )
    return number


def _optional(data: dict[str, Any], name: str, low: float, high: float) -> float | None:
    if data.get(name) is None:
        return None
    return _number(data, name, low, high)


def _timestamp(value: object, now: float, max_skew: float, max_age: float) -> float:
    """Epoch milliseconds (a JSON number, as Date.now() and the Geolocation API give it) or an
    ISO 8601 string with a zone; not ahead of the server's clock by more than `max_skew`."""
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            seconds = None
        elif 0 <= value <= _MAX_EPOCH_MS:
            seconds = float(value) / 1000.0
    elif (
        isinstance(value, str) and 0 < len(value) <= 40 and value.isascii() and value.isprintable()
    ):
        # printable: Python reads any character between date and time (U+0000, a tab) as "T"
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is not None:
            seconds = moment.timestamp()
    if seconds is None:
        raise InvalidLocation(
            "timestamp: epoch milliseconds (a JSON number) or an ISO 8601 time with a zone,"
            f" such as 2026-12-01T10:00:00Z (got {shown(value)})"
        )
    if seconds > now + max_skew:
        raise InvalidLocation(
            f"timestamp: {seconds - now:.1f} s ahead of the server's clock"
            f" (at most {max_skew:g} s allowed)"
        )
    if seconds < now - max_age:
        raise ClientError(
            "stale_position", f"timestamp: older than {max_age:g} s; send the current position"
        )
    return seconds


def parse_location_update(
    data: object,
    order_ids: OrderIdFormat,
    *,
    now: float,
    max_skew: float,
    max_age: float,
) -> LocationUpdate:
    """`{"orderId", "lat", "lng", "heading"?, "speed"?, "accuracy"?, "timestamp"}`, or
    InvalidLocation naming the first field that is wrong."""
    if not isinstance(data, dict):
        raise InvalidLocation(
            'locationUpdate takes {"orderId", "lat", "lng", "heading"?, "speed"?,'
            ' "accuracy"?, "timestamp"}'
        )
    unknown = sorted(str(k)[:_SHOWN] for k in data if k not in _FIELDS)
    if unknown:
        raise InvalidLocation(f"unknown field {unknown[0]!r}")
    try:
        order_id = order_ids.parse(data.get("orderId"))
    except InvalidOrderId as exc:
        raise InvalidLocation(f"orderId: {exc}") from None
    return LocationUpdate(
        order_id=order_id,
        lat=_number(data, "lat", -90.0, 90.0),
        lng=_number(data, "lng", -180.0, 180.0),
        heading=_optional(data, "heading", 0.0, 360.0),
        speed=_optional(data, "speed", 0.0, 150.0),  # m/s: no rider goes faster
        accuracy=_optional(data, "accuracy", 0.0, 100_000.0),  # metres
        recorded_at=_timestamp(data.get("timestamp"), now, max_skew, max_age),
    )


def straight_line_metres(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle distance (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def eta_estimate(
    update: LocationUpdate, destination: Destination | None, speed_kmh: float
) -> dict[str, Any] | None:
    """A straight-line estimate at the configured speed: no roads, no traffic."""
    if destination is None:
        return None
    metres = straight_line_metres(update.lat, update.lng, destination.lat, destination.lng)
    seconds = round(metres / (speed_kmh / 3.6))
    return {
        "estimatedSeconds": seconds,
        "estimatedArrival": iso_utc(datetime.fromtimestamp(update.recorded_at + seconds, UTC)),
        "straightLineMeters": round(metres),
        "method": "straight_line",
    }


def rider_location_message(
    update: LocationUpdate, rider_id: str, eta: dict[str, Any] | None
) -> dict[str, Any]:
    """The `riderLocation` payload: the update's fields, the rider, and the ETA estimate."""
    return {
        "orderId": update.order_id,
        "riderId": rider_id,
        "lat": update.lat,
        "lng": update.lng,
        "heading": update.heading,
        "speed": update.speed,
        "accuracy": update.accuracy,
        "timestamp": iso_utc(datetime.fromtimestamp(update.recorded_at, UTC)),
        "eta": eta,
    }
