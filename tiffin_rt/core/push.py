"""A browser's PushSubscription JSON, checked strictly, and the payload a push carries."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import orjson
from cryptography.hazmat.primitives.asymmetric import ec

from tiffin_rt.core.errors import ClientError

MAX_ENDPOINT_LENGTH = 2048
PUSH_SERVICE_PORT = 443
MAX_BODY_BYTES = 4096
# RFC 8291: the user agent's P-256 public key (uncompressed point) and 16-byte auth secret.
P256DH_BYTES = 65
AUTH_BYTES = 16
# The most JSON a push carries: a push service takes 4096 bytes of aes128gcm body (RFC 8291
# section 4), of which a one-record body spends 86 on its header, 16 on the tag, 1 on padding.
MAX_PLAINTEXT_BYTES = 4096 - 86 - 16 - 1
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")
_FIELDS = {"endpoint", "expirationTime", "keys"}
_KEY_FIELDS = {"p256dh", "auth"}
# expirationTime is a JavaScript time in milliseconds; the year 9999 at most.
_MAX_EXPIRATION_MS = 253402300799000
# IPv6 addresses whose last 32 bits are an IPv4 address the packet reaches: NAT64's well-known
# prefix (RFC 6052; AWS and DNS64 networks route it to any IPv4 address, private ones included)
# and the deprecated IPv4-compatible form. Python calls both global whatever they carry.
_CARRIES_IPV4 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("::/96"))


@dataclass(frozen=True, slots=True)
class PushSubscription:
    endpoint: str
    p256dh: str
    auth: str
    expires_at: datetime | None = None

    def as_subscription_info(self) -> dict[str, Any]:
        """What pywebpush takes."""
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}


def b64url_decode(text: str) -> bytes:
    """Base64url with or without padding; binascii.Error for anything else."""
    if not text.isascii():
        raise binascii.Error("not ASCII")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _refuse(message: str) -> ClientError:
    return ClientError("bad_request", message)


def parse_json_object(body: bytes) -> dict[str, Any]:
    if len(body) > MAX_BODY_BYTES:
        raise ClientError("too_large", f"a push subscription is at most {MAX_BODY_BYTES} bytes")
    try:
        value = orjson.loads(body)  # refuses NaN and Infinity, which are not JSON
    except orjson.JSONDecodeError:
        raise _refuse("the body must be JSON: the browser's PushSubscription.toJSON()") from None
    if not isinstance(value, dict):
        raise _refuse("the body must be a JSON object: the browser's PushSubscription.toJSON()")
    return value


def is_public_address(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        ip = _carried_ipv4(ip) or ip
    return ip.is_global and not ip.is_multicast


def _carried_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one leads to (mapped, 6to4, NAT64, IPv4-compatible): judged
    instead, so `[64:ff9b::a9fe:a9fe]` is the metadata address 169.254.169.254 it reaches."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if any(ip in network for network in _CARRIES_IPV4):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def literal_address(host: str) -> str | None:
    """The host as an IP address when it is one (`[::1]` included), else None."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        return None


def check_endpoint(value: object, http_hosts: frozenset[str], *, any_port: bool = False) -> str:
    """An https URL of a push service on port 443 (http, and other ports, only for a host in
    push.http_hosts). `any_port`: to name a device to remove, which may predate the port rule."""
    if not isinstance(value, str) or not value:
        raise _refuse("endpoint: a URL string is required")
    if len(value) > MAX_ENDPOINT_LENGTH:
        raise _refuse(f"endpoint: at most {MAX_ENDPOINT_LENGTH} characters")
    if not value.isascii() or not value.isprintable() or " " in value:
        raise _refuse("endpoint: printable ASCII without spaces (a URL as the browser gives it)")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise _refuse("endpoint: not a valid URL") from None
    host = parts.hostname or ""
    if not host:
        raise _refuse("endpoint: the URL has no host")
    if parts.username is not None or parts.password is not None or parts.fragment:
        raise _refuse("endpoint: a push service URL has no user name, password or fragment")
    if port == 0:
        raise _refuse("endpoint: port 0 is no port")
    trusted = host.lower() in http_hosts
    literal = literal_address(host)
    if literal is not None and not trusted and not is_public_address(literal):
        raise _refuse("endpoint: a push service has a public address (this one is internal)")
    if parts.scheme == "http" and trusted:
        return value
    if parts.scheme != "https":
        raise _refuse("endpoint: must be an https:// URL")
    if port not in (None, PUSH_SERVICE_PORT) and not trusted and not any_port:
        # Every push service answers on 443; another port is some other server's.
        raise _refuse(f"endpoint: a push service answers on port {PUSH_SERVICE_PORT} (got {port})")
    return value


def _b64url_key(value: object, name: str, size: int) -> bytes:
    if not isinstance(value, str) or not value:
        raise _refuse(f"keys.{name}: a base64url string is required")
    if len(value) > 2 * size + 4 or not _BASE64URL.match(value):
        raise _refuse(f"keys.{name}: base64url of {size} bytes expected")
    try:
        raw = b64url_decode(value)
    except (binascii.Error, ValueError):
        raise _refuse(f"keys.{name}: base64url of {size} bytes expected") from None
    if len(raw) != size:
        raise _refuse(f"keys.{name}: {size} bytes expected (got {len(raw)})")
    return raw


def _expiration(value: object) -> datetime | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 <= value <= _MAX_EXPIRATION_MS
    ):
        raise _refuse("expirationTime: null or a time in milliseconds since 1970")
    return datetime.fromtimestamp(value / 1000, UTC)


def parse_subscription(value: dict[str, Any], http_hosts: frozenset[str]) -> PushSubscription:
    """The browser's PushSubscription.toJSON(): {endpoint, expirationTime, keys: {p256dh,
    auth}}; anything else is refused with a message naming the field."""
    unknown = sorted(set(value) - _FIELDS)
    if unknown:
        expected = "expected endpoint, expirationTime, keys"
        raise _refuse(f"unknown field {unknown[0][:40]!r} ({expected})")
    endpoint = check_endpoint(value.get("endpoint"), http_hosts)
    keys = value.get("keys")
    if not isinstance(keys, dict):
        raise _refuse('keys: an object {"p256dh", "auth"} is required')
    unknown = sorted(set(keys) - _KEY_FIELDS)
    if unknown:
        raise _refuse(f"keys: unknown field {unknown[0][:40]!r} (expected p256dh, auth)")
    point = _b64url_key(keys.get("p256dh"), "p256dh", P256DH_BYTES)
    _b64url_key(keys.get("auth"), "auth", AUTH_BYTES)
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError:
        raise _refuse("keys.p256dh: not a P-256 public key") from None
    return PushSubscription(
        endpoint=endpoint,
        p256dh=keys["p256dh"].rstrip("="),
        auth=keys["auth"].rstrip("="),
        expires_at=_expiration(value.get("expirationTime")),
    )


def push_body(message: dict[str, Any]) -> bytes:
    """The `notification` payload as JSON, as the live event has it; one too large for a push
    keeps what identifies it (the page reads the rest from /api/notifications)."""
    body = orjson.dumps(message)
    if len(body) <= MAX_PLAINTEXT_BYTES:
        return body
    title = message.get("title")
    short: dict[str, Any] = {
        key: message.get(key) for key in ("id", "type", "createdAt", "eventId") if key in message
    }
    short["title"] = title[:200] if isinstance(title, str) else None
    short["truncated"] = True
    if "room" in message:
        short["room"] = message["room"]
    body = orjson.dumps(short)
    if len(body) <= MAX_PLAINTEXT_BYTES:
        return body
    return orjson.dumps(
        {"id": message.get("id"), "eventId": message.get("eventId"), "truncated": True}
    )
