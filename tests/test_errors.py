"""One error vocabulary: every refusal is a ClientError, answered one way per transport."""

from __future__ import annotations

import json

import pytest

from tiffin_rt.access import AccessDenied
from tiffin_rt.auth import AuthError
from tiffin_rt.core.chat import ChatError
from tiffin_rt.core.errors import ClientError, ack_error, ack_ok
from tiffin_rt.transports.http_auth import refusal


@pytest.mark.parametrize(
    "exc",
    [
        AuthError("token expired"),
        AccessDenied("forbidden", "you may not join order-7"),
        ChatError("conversation_closed", "conversation 3 is closed"),
    ],
)
def test_every_refusal_is_a_client_error_with_code_and_message(exc: ClientError) -> None:
    assert isinstance(exc, ClientError)
    assert str(exc) == exc.message
    assert exc.ack() == ack_error(exc.code, exc.message)


def test_the_ack_shapes_are_the_contract() -> None:
    """README, "The contract": the bytes a client parses."""
    refused = AccessDenied("forbidden", "you may not join order-7").ack()
    assert json.dumps(refused) == (
        '{"ok": false, "error": {"code": "forbidden", "message": "you may not join order-7"}}'
    )
    assert ack_ok(room="order-7") == {"ok": True, "room": "order-7"}


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("bad_request", 400),
        ("invalid_payload", 400),
        ("conversation_closed", 400),
        ("unauthorized", 401),
        ("forbidden", 403),
        ("not_found", 404),
        ("invalid_transition", 409),
        ("rate_limited", 429),
        ("unavailable", 503),
    ],
)
def test_http_answers_a_refusal_with_the_status_its_code_names(code: str, status: int) -> None:
    response = refusal(ClientError(code, "why"))
    assert response.status == status
    assert response.text is not None
    assert json.loads(response.text) == {"error": {"code": code, "message": "why"}}
