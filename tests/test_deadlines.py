"""The shared deadline heap behind token expiry: order, replacement, cancellation, churn."""

from __future__ import annotations

import asyncio

from tiffin_rt.transports.socketio.deadlines import Deadlines


async def test_deadlines_fire_in_time_order_and_a_replaced_one_fires_once() -> None:
    fired: list[str] = []
    done = asyncio.Event()

    def fire(key: str) -> None:
        fired.append(key)
        if len(fired) == 3:
            done.set()

    deadlines: Deadlines[str] = Deadlines(fire)
    deadlines.set("late", 0.15)
    deadlines.set("early", 0.05)
    deadlines.set("moved", 0.01)
    deadlines.set("moved", 0.10)  # replaces its earlier deadline
    deadlines.set("gone", 0.02)
    deadlines.cancel("gone")
    await asyncio.wait_for(done.wait(), 2)
    await asyncio.sleep(0.05)
    assert fired == ["early", "moved", "late"]
    assert len(deadlines) == 0


async def test_a_callback_can_set_the_next_deadline_of_its_key() -> None:
    steps: list[int] = []
    done = asyncio.Event()
    deadlines: Deadlines[str] = Deadlines(lambda key: step(key))

    def step(key: str) -> None:
        steps.append(len(steps))
        if len(steps) < 3:
            deadlines.set(key, 0.01)
        else:
            done.set()

    deadlines.set("sid", 0)
    await asyncio.wait_for(done.wait(), 2)
    assert steps == [0, 1, 2]


async def test_cancelled_deadlines_do_not_pile_up() -> None:
    deadlines: Deadlines[int] = Deadlines(lambda _: None)
    for key in range(10_000):  # connections that come and go long before their expiry
        deadlines.set(key, 3600)
        deadlines.cancel(key)
    deadlines.set(-1, 3600)
    assert len(deadlines) == 1
    assert len(deadlines._heap) <= 200
    deadlines.clear()
