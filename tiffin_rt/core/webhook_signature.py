"""Signed webhook deliveries, in the scheme Stripe uses: a header `t=<unix time>,v1=<hex>`
where v1 is HMAC-SHA256 over `<t>.<raw body>` with the shared secret. Several v1 entries
may be present (a secret being rotated); one matching is enough."""

from __future__ import annotations

import hashlib
import hmac

MAX_HEADER_LENGTH = 2048
MAX_SIGNATURES = 8


class BadSignature(Exception):
    """No v1 signature matches (or the header is missing or unreadable): answer 401."""


class StaleTimestamp(Exception):
    """The signature matches but its time is outside the tolerance (a replayed capture)."""


def sign(body: bytes, secret: bytes, timestamp: int) -> str:
    """The header value a provider sends for `body` at `timestamp`."""
    digest = hmac.new(secret, b"%d." % timestamp + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def _parse(header: str) -> tuple[int, list[str]]:
    if len(header) > MAX_HEADER_LENGTH or not header.isascii():
        raise BadSignature("the signature header is not a t=...,v1=... list")
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            if not (value.isdigit() and 0 < len(value) <= 12) or timestamp is not None:
                raise BadSignature("the signature header's t= is not one unix time")
            timestamp = int(value)
        elif key == "v1":
            signatures.append(value.lower())
    if timestamp is None or not signatures or len(signatures) > MAX_SIGNATURES:
        raise BadSignature("the signature header needs t= and v1=")
    return timestamp, signatures


def verify(header: str | None, body: bytes, secret: bytes, *, tolerance: float, now: float) -> int:
    """The signed timestamp, once a v1 signature matches and the time is within tolerance."""
    if not header:
        raise BadSignature("no signature header")
    timestamp, signatures = _parse(header)
    expected = hmac.new(secret, b"%d." % timestamp + body, hashlib.sha256).hexdigest()
    # Every candidate compared in constant time; none short-circuits on the first mismatch.
    matches = [hmac.compare_digest(expected, candidate) for candidate in signatures]
    if not any(matches):
        raise BadSignature("no signature matches")
    age = now - timestamp
    if age > tolerance:
        raise StaleTimestamp(f"the signed time is {age:.0f} s old")
    if -age > tolerance:
        raise StaleTimestamp(f"the signed time is {-age:.0f} s in the future")
    return timestamp
