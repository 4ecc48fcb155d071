"""The replay-to-live handoff on its own: every interleaving of replay and live delivery."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tiffin_rt.core.events import ORDER_STATUS, Event
from tiffin_rt.core.replay import (
    Handoffs,
    InvalidEventId,
    LogBounds,
    parse_last_event_id,
    resumable,
)

ROOMS = {"a": {"user-alice"}, "b": {"user-bob"}}


def member(sid: str, room: str) -> bool:
    return room in ROOMS.get(sid, set())


def ev(event_id: int, room: str = "user-alice") -> Event:
    return Event(event_id, ORDER_STATUS, datetime.now(UTC), (room,), {})


def test_live_events_during_replay_are_held_then_released_without_replayed_ones() -> None:
    handoffs = Handoffs(member)
    handoffs.begin("a", ceiling=10, floor=5)
    assert handoffs.hold(ev(9)) == ["a"]  # the listener is still delivering up to 10
    assert handoffs.hold(ev(11)) == ["a"]  # committed after the ceiling: live only
    assert handoffs.hold(ev(12, "user-bob")) == []  # not a's room
    handoffs.record_sent("a", [6, 7, 8, 9, 10])
    assert [e.id for e in handoffs.release("a")] == [11]
    assert handoffs.release("a") == []
    assert handoffs.hold(ev(10)) == ["a"]  # the rest of the listener's batch: replayed already
    assert handoffs.hold(ev(13)) == []  # live from now on


async def test_the_filter_ends_once_delivery_passes_the_replay() -> None:
    handoffs = Handoffs(member)
    handoffs.begin("a", ceiling=10)
    handoffs.record_sent("a", [9, 10])
    assert handoffs.release("a") == []
    assert len(handoffs) == 1
    handoffs.deliver([ev(10), ev(11)])
    assert len(handoffs) == 0


async def test_nothing_to_filter_once_delivery_is_already_past_the_ceiling() -> None:
    handoffs = Handoffs(member)
    handoffs.deliver([ev(20)])
    handoffs.begin("a", ceiling=20)
    handoffs.record_sent("a", [19])
    assert handoffs.release("a") == []
    assert len(handoffs) == 0


def test_a_connection_that_was_sent_nothing_keeps_no_state_after_release() -> None:
    handoffs = Handoffs(member)
    handoffs.begin("a", ceiling=5000)  # a fresh connection on a quiet server
    assert handoffs.release("a") == []
    assert len(handoffs) == 0


def test_a_late_event_the_replay_did_not_see_is_still_delivered() -> None:
    handoffs = Handoffs(member)
    handoffs.begin("a", ceiling=10)
    handoffs.record_sent("a", [8, 10])  # 9 was still uncommitted when the replay read
    assert handoffs.release("a") == []
    assert handoffs.hold(ev(9)) == []


def test_ids_at_or_below_the_clients_own_last_id_are_never_sent_again() -> None:
    handoffs = Handoffs(member)
    handoffs.begin("a", ceiling=5, floor=8)  # this node's listener is behind the last node's
    assert handoffs.release("a") == []
    assert handoffs.hold(ev(7)) == ["a"]
    assert handoffs.hold(ev(9)) == []
    handoffs.drop_floor("a")  # after a resync the client wants everything again
    assert handoffs.hold(ev(8)) == []


def test_unlogged_events_are_never_mistaken_for_replayed_ones() -> None:
    handoffs = Handoffs(member)
    handoffs.begin("a", ceiling=10, floor=3)
    assert handoffs.hold(ev(0)) == ["a"]
    assert [e.id for e in handoffs.release("a")] == [0]


@pytest.mark.parametrize(
    ("raw", "expected"), [(None, None), ("", None), (0, 0), (42, 42), ("42", 42), ("7", 7)]
)
def test_last_event_id_parsing(raw: object, expected: int | None) -> None:
    assert parse_last_event_id(raw) == expected


@pytest.mark.parametrize(
    "raw", [True, -1, "x", "1e3", 1.5, [1], "9" * 20, 2**63, " 7 ", "07", "+7", "²"]
)
def test_malformed_last_event_ids(raw: object) -> None:
    with pytest.raises(InvalidEventId):
        parse_last_event_id(raw)


@pytest.mark.parametrize(
    ("last", "oldest", "newest", "expected"),
    [
        (5, 1, 10, True),
        (10, 1, 10, True),
        (11, 1, 10, False),  # from the future: another database, or a reset log
        (4, 5, 10, True),  # 5 onwards is all there
        (3, 5, 10, False),  # 4 may have been pruned
        (0, None, None, True),
        (3, None, None, False),
    ],
)
def test_resumable(last: int, oldest: int | None, newest: int | None, expected: bool) -> None:
    assert resumable(last, LogBounds(oldest, newest)) is expected
