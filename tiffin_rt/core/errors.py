"""One error vocabulary: a refusal the client is told as it is, a `(code, message)` pair.

Socket.IO answers it as the acknowledgement `{"ok": false, "error": {"code", "message"}}`
(`ack_error`), HTTP as `{"error": {"code", "message"}}` with the status its code names
(`http_status`, used by transports.http_auth). Every refusal of every transport is one.
"""

from __future__ import annotations

from typing import Any

# The HTTP status of each code; any other code is the client's request: 400.
HTTP_STATUS = {
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "invalid_transition": 409,
    "too_large": 413,
    "rate_limited": 429,
    "internal": 500,
    "unavailable": 503,
}


def http_status(code: str) -> int:
    return HTTP_STATUS.get(code, 400)


class ClientError(Exception):
    """A refused request; `code` and `message` are safe to show the client as they are."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def ack(self) -> dict[str, Any]:
        return ack_error(self.code, self.message)


def ack_ok(**fields: Any) -> dict[str, Any]:
    """A Socket.IO acknowledgement of success: `{"ok": true, ...fields}`."""
    return {"ok": True, **fields}


def ack_error(code: str, message: str) -> dict[str, Any]:
    """A Socket.IO acknowledgement of a refusal (README, "The contract")."""
    return {"ok": False, "error": {"code": code, "message": message}}
