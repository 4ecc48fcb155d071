"""The support chat's pure rules: typing throttle and expiry, agent counting, validation."""

from __future__ import annotations

import pytest

from tiffin_rt.core.chat import (
    AgentPresence,
    ChatError,
    Limits,
    TypingTracker,
    parse_history,
    parse_message,
    parse_start,
)

LIMITS = Limits(max_text=10, max_subject=20, page_size=5, max_page_size=8)


def test_typing_forwards_changes_throttles_repeats_and_expires_the_silent() -> None:
    tracker = TypingTracker(throttle=2.0, timeout=5.0)
    key = ("sid1", 7)
    assert tracker.update(key, True, now=0.0) is True
    assert tracker.update(key, True, now=1.0) is False  # within the throttle
    assert tracker.update(key, True, now=2.5) is True  # a refresh for the receivers
    assert tracker.expired(now=7.0) == []  # last seen at 2.5
    assert tracker.expired(now=7.5) == [key]
    assert tracker.update(key, False, now=8.0) is False  # already cleared: nothing to send
    assert tracker.update(key, True, now=9.0) is True
    assert tracker.update(key, False, now=9.5) is True
    assert tracker.update(("sid2", 7), True, now=10.0) is True
    assert tracker.forget_connection("sid2") == [7]
    assert tracker.expired(now=100.0) == []


def test_an_agent_with_several_tabs_counts_once() -> None:
    presence = AgentPresence()
    assert presence.add("sam") is True
    assert presence.add("sam") is False
    assert presence.add("kim") is True
    assert len(presence) == 2
    assert presence.remove("sam") is False
    assert presence.remove("sam") is True
    assert presence.remove("sam") is False  # never below zero
    assert presence.users() == ["kim"]


def test_text_is_kept_exactly_as_written() -> None:
    request = parse_message(
        {"conversationId": "12", "text": " <i>a</i> ", "clientMessageId": "c"}, LIMITS
    )
    assert (request.conversation_id, request.text) == (12, " <i>a</i> ")


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ({"conversationId": 1, "text": "x" * 11, "clientMessageId": "c"}, "too_long"),
        ({"conversationId": 1, "text": "\t", "clientMessageId": "c"}, "empty_text"),
        ({"conversationId": 0, "text": "hi", "clientMessageId": "c"}, "invalid_payload"),
        ({"conversationId": 2**63, "text": "hi", "clientMessageId": "c"}, "invalid_payload"),
        ({"conversationId": 1.5, "text": "hi", "clientMessageId": "c"}, "invalid_payload"),
        ({"conversationId": 1, "text": "hi", "clientMessageId": ""}, "invalid_payload"),
        (["not", "an", "object"], "invalid_payload"),
    ],
)
def test_bad_messages_are_refused_with_a_code(data: object, code: str) -> None:
    with pytest.raises(ChatError) as refused:
        parse_message(data, LIMITS)
    assert refused.value.code == code


def test_subjects_and_pages() -> None:
    start = parse_start({"subject": "  Late  ", "orderId": 42}, LIMITS)
    assert (start.subject, start.order_id) == ("Late", "42")
    assert parse_start({"subject": "x", "orderId": ""}, LIMITS).order_id is None
    assert parse_history({"conversationId": 1}, LIMITS).limit == 5
    assert parse_history({"conversationId": 1, "limit": 1000}, LIMITS).limit == 8
    page = parse_history({"conversationId": 1, "after": "9"}, LIMITS)
    assert (page.before, page.after) == (None, 9)
