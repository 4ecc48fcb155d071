"""The moving windows behind every rate limit: exact counts, and no key kept past its window."""

from __future__ import annotations

from tiffin_rt.ratelimit import SWEEP_INTERVAL, MovingWindows


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_window_admits_its_amount_then_refuses_until_the_oldest_hit_leaves_it() -> None:
    clock = Clock()
    windows = MovingWindows(clock)
    three_per_minute = [(3, 60.0)]
    assert [windows.hit(three_per_minute, "ip") for _ in range(4)] == [True, True, True, False]
    clock.now += 59.9
    assert windows.hit(three_per_minute, "ip") is False
    clock.now += 0.2  # the first hit is now older than a minute
    assert windows.hit(three_per_minute, "ip") is True
    assert windows.hit(three_per_minute, "other ip") is True


def test_a_refused_hit_counts_in_no_window() -> None:
    clock = Clock()
    windows = MovingWindows(clock)
    both = [(2, 1.0), (3, 60.0)]  # "2/second; 3/minute"
    assert [windows.hit(both, "c") for _ in range(3)] == [True, True, False]
    clock.now += 1.5
    assert windows.hit(both, "c") is True  # the refused third hit took no minute budget
    assert windows.hit(both, "c") is False


def test_keys_of_connections_long_gone_are_dropped() -> None:
    clock = Clock()
    windows = MovingWindows(clock)
    for connection in range(5000):  # each connection sends one event, then leaves
        windows.hit([(20, 1.0)], ("event", f"sid{connection}", "joinRoom"))
    assert len(windows) == 5000
    clock.now += SWEEP_INTERVAL + 1
    windows.hit([(20, 1.0)], ("event", "a new connection", "joinRoom"))
    assert len(windows) == 1
