"""The kitchen queue's rules as pure functions: queue order, positions, estimates, and which
vendors a batch of log events touches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tiffin_rt.core.events import Event
from tiffin_rt.core.kitchen import (
    Averages,
    QueuedOrder,
    build_queue,
    kitchen_queue_message,
    vendors_touched,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return NOW + timedelta(minutes=minutes)


def test_preparing_comes_first_then_confirmed_then_pending_each_oldest_first() -> None:
    orders = [
        QueuedOrder("10", "pending", at(-1), at(-1)),
        QueuedOrder("9", "pending", at(-5), at(-5)),
        QueuedOrder("8", "confirmed", at(-2), at(-3)),
        QueuedOrder("11", "preparing", at(-1), at(-2)),
        QueuedOrder("7", "ready", at(-1), at(-20)),
        QueuedOrder("2", "pending", None, None),  # predates the log: placed first
    ]
    queue = build_queue("v", orders, Averages(None, None, 0), now=NOW)
    assert [o.order_id for o in queue.waiting] == ["11", "8", "2", "9", "10"]
    assert {k: (p.position, p.ahead) for k, p in queue.positions.items()} == {
        "11": (1, 0),
        "8": (2, 1),
        "2": (3, 2),
        "9": (4, 3),
        "10": (5, 4),
    }
    assert queue.counts() == {"pending": 3, "confirmed": 1, "preparing": 1, "ready": 1}
    assert all(p.estimated_ready_at is None for p in queue.positions.values())


def test_estimates_follow_the_average_and_the_kitchens_parallel_stations() -> None:
    orders = [
        QueuedOrder("1", "preparing", at(-4), at(-6)),  # 6 of 10 minutes left
        QueuedOrder("2", "confirmed", at(-3), at(-3)),
        QueuedOrder("3", "pending", at(-2), at(-2)),
    ]
    averages = Averages(600.0, 60.0, 5)
    one = build_queue("v", orders, averages, now=NOW, parallel=1)
    assert [one.positions[k].estimated_ready_at for k in "123"] == [at(6), at(16), at(26)]
    two = build_queue("v", orders, averages, now=NOW, parallel=2)
    assert [two.positions[k].estimated_ready_at for k in "123"] == [at(6), at(10), at(16)]
    late = [QueuedOrder("1", "preparing", at(-30), at(-31))]  # over time: ready any moment
    assert build_queue("v", late, averages, now=NOW).positions["1"].estimated_ready_at == NOW
    message = kitchen_queue_message(one)
    assert message["averagePrepSeconds"] == 600.0
    assert message["orders"]["preparing"][0]["estimatedReadyAt"] == "2026-12-01T12:06:00.000Z"


def test_a_queue_lists_at_most_max_listed_orders_per_status_and_counts_them_all() -> None:
    orders = [QueuedOrder(str(n), "pending", at(n), at(n)) for n in range(1, 8)]
    orders.append(QueuedOrder("99", "ready", at(0), at(-9)))
    queue = build_queue("v", orders, Averages(None, None, 0), now=NOW)
    message = kitchen_queue_message(queue, max_listed=3)
    assert [o["orderId"] for o in message["orders"]["pending"]] == ["1", "2", "3"]
    assert [o["orderId"] for o in message["orders"]["ready"]] == ["99"]
    assert message["counts"]["pending"] == 7
    assert message["waiting"] == 7
    assert queue.positions["7"].position == 7


def event(kind: str, payload: object, order_id: str | None = "1") -> Event:
    return Event(1, kind, NOW, (), payload if isinstance(payload, dict) else {}, order_id)


def test_only_order_events_touch_vendors_and_a_vendor_is_text() -> None:
    events = [
        event("order_status", {"vendorId": "a"}),
        event("order_parties", {"vendorId": "b"}, "2"),
        event("order_status", {"vendorId": 7}),
        event("order_status", {"vendorId": {"x": 1}}),
        event("order_status", {"vendorId": ""}),
        event("order_status", {"vendorId": None}, None),
        event("notification", {"vendorId": "c"}),
    ]
    assert vendors_touched(events, {}) == {"a", "b"}
    # an order last queued at another vendor touches that one too (it left it)
    assert vendors_touched([event("order_parties", {"vendorId": None}, "5")], {"5": "z"}) == {"z"}
