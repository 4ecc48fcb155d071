"""JWT verification shared by HTTP, SSE and Socket.IO."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import jwt

from tiffin_rt.config import AuthSettings
from tiffin_rt.core.errors import ClientError
from tiffin_rt.core.policy import is_staff
from tiffin_rt.core.storable import unstorable

ROLES = ("customer", "kitchen", "rider", "support", "admin")


# PyJWT checks these with int(), which also takes "1700000000", True and 1e30: a string `exp`
# would pass the check here yet be no expiry to the code that ends connections at `exp`.
TIME_CLAIMS = ("exp", "nbf", "iat")
MAX_NUMERIC_DATE = 253402300799  # 9999-12-31T23:59:59Z


def is_numeric_date(value: object) -> bool:
    """RFC 7519 NumericDate: a JSON number (not a string or boolean), finite and in range."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and 0 <= value <= MAX_NUMERIC_DATE


class AuthError(ClientError):
    """A token that cannot be accepted (HTTP 401 whatever the code)."""

    def __init__(self, message: str, code: str = "unauthorized") -> None:
        super().__init__(code, message)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is on the other end of a connection, from a verified token."""

    user_id: str
    role: str
    vendor_id: str | None
    expires_at: float | None

    @property
    def is_staff(self) -> bool:
        return is_staff(self.role)


class TokenVerifier:
    def __init__(self, settings: AuthSettings) -> None:
        self._settings = settings
        self._key = settings.jwt_public_key or settings.jwt_secret
        self._algorithms = list(settings.jwt_algorithms)

    @property
    def settings(self) -> AuthSettings:
        return self._settings

    @property
    def key(self) -> str:
        return self._key

    @property
    def algorithms(self) -> list[str]:
        return self._algorithms

    def decode(self, token: object) -> dict[str, Any]:
        if not isinstance(token, str) or not token:
            raise AuthError("a token is required")
        if not token.isascii():
            # A JWT is base64url and dots; header bytes that are not UTF-8 reach us as lone
            # surrogates, which the decoder would fail on with a traceback.
            raise AuthError("invalid token: not a JWT (characters outside ASCII)")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                audience=self._settings.jwt_audience,
                issuer=self._settings.jwt_issuer,
                leeway=self._settings.leeway,
                # A token naming an audience is refused unless that audience is configured
                # (PyJWT's default), the same rule aiohttp-jwt applies on HTTP.
                options={"require": ["sub", "exp"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        for name in TIME_CLAIMS:
            if name in claims and not is_numeric_date(claims[name]):
                raise AuthError(
                    f"invalid token: {name} must be a number of seconds since 1970"
                    f" up to {MAX_NUMERIC_DATE}"
                )
        return claims

    def verify(self, token: object) -> Identity:
        return identity_from_claims(self.decode(token))


def identity_from_claims(claims: dict[str, Any]) -> Identity:
    sub = claims.get("sub")
    role = claims.get("role", "customer")
    if not isinstance(sub, str | int) or str(sub) == "":
        raise AuthError("invalid token: sub must be the user id")
    if role not in ROLES:
        raise AuthError(f"invalid token: role must be one of {', '.join(ROLES)}")
    vendor = claims.get("vendor_id")
    if role == "kitchen" and vendor in (None, ""):
        raise AuthError("invalid token: kitchen staff need a vendor_id claim")
    for name, value in (("sub", sub), ("vendor_id", vendor)):
        reason = unstorable(value) if isinstance(value, str) else None
        if reason is not None:  # they become room names and query arguments
            raise AuthError(f"invalid token: {name} {reason}")
    exp = claims.get("exp")
    return Identity(
        user_id=str(sub),
        role=str(role),
        vendor_id=None if vendor in (None, "") else str(vendor),
        expires_at=float(exp) if isinstance(exp, int | float) else None,
    )


def mint_token(
    settings: AuthSettings,
    *,
    sub: str,
    role: str,
    vendor_id: str | None = None,
    ttl: int = 3600,
) -> str:
    """Sign a token with the configured HS secret, for local use and the demo page."""
    if not settings.jwt_secret:
        raise AuthError("auth.jwt_secret is empty: minting needs the HMAC secret", "config")
    algorithm = next((a for a in settings.jwt_algorithms if a.startswith("HS")), "HS256")
    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub, "role": role, "iat": now, "exp": now + ttl}
    if vendor_id:
        claims["vendor_id"] = vendor_id
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    return jwt.encode(claims, settings.jwt_secret, algorithm=algorithm)
