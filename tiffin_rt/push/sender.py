"""One push to one subscription through pywebpush's asyncio support (WebPusher.send_async on
our aiohttp session, through guard.py: public hosts only, no redirects, a bounded answer):
RFC 8291 aes128gcm encryption, TTL, Urgency and the VAPID header."""

from __future__ import annotations

import email.utils
import logging
import time
from dataclasses import dataclass

import aiohttp
from pywebpush import WebPusher

from tiffin_rt.core.push import PushSubscription
from tiffin_rt.push.guard import Answer, GuardedPoster, NotAPushService
from tiffin_rt.push.vapid import VapidSigner

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the push service answered; status None when it could not be reached in time."""

    status: int | None
    retry_after: float | None = None
    error: str = ""
    final: bool = False  # no answer, and none will come: not retried

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def gone(self) -> bool:
        """The subscription no longer exists (RFC 8030 section 7.3): forget it."""
        return self.status in (404, 410)

    @property
    def retryable(self) -> bool:
        if self.status is None:
            return not self.final
        return self.status == 429 or self.status >= 500


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """Retry-After as seconds or an HTTP date (RFC 9110 section 10.2.3); None if unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):  # a day no C long holds
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


class PushSender:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        signer: VapidSigner,
        *,
        ttl: int,
        urgency: str,
        trusted: frozenset[str] = frozenset(),
    ) -> None:
        """`trusted`: push.http_hosts, the hosts that may be non-public (guard.py)."""
        self._session = session
        self._poster = GuardedPoster(session, trusted)
        self._signer = signer
        self._ttl = ttl
        self._urgency = urgency

    async def send(self, sub: PushSubscription, body: bytes) -> Outcome:
        headers = dict(self._signer.headers(sub.endpoint))
        headers["Urgency"] = self._urgency
        pusher = WebPusher(sub.as_subscription_info(), aiohttp_session=self._poster)
        try:
            response = await pusher.send_async(
                body,
                headers,
                ttl=self._ttl,
                content_encoding="aes128gcm",
                timeout=self._session.timeout,
            )
        except NotAPushService as exc:
            return Outcome(status=None, error=str(exc)[:200], final=True)
        except (aiohttp.ClientError, TimeoutError, UnicodeDecodeError) as exc:
            return Outcome(status=None, error=f"{type(exc).__name__}: {exc}"[:200])
        assert isinstance(response, Answer)
        return Outcome(
            status=response.status,
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
        )
