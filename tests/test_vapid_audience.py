"""The VAPID `aud` claim is the push service's origin in its one serialised form (RFC 8292 2,
RFC 6454): a push service compares it with its own origin and refuses any other spelling."""

from __future__ import annotations

import base64
import json

import pytest

from tiffin_rt.push.vapid import VapidSigner, generate_keys


def _aud(header: dict[str, str]) -> str:
    token = header["Authorization"].removeprefix("vapid t=").split(",")[0]
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(claims["aud"])


@pytest.mark.parametrize(
    ("endpoint", "origin"),
    [
        ("https://fcm.googleapis.com/fcm/send/abc", "https://fcm.googleapis.com"),
        ("https://FCM.googleapis.com:443/fcm/send/abc", "https://fcm.googleapis.com"),
        (
            "HTTPS://Updates.Push.Services.Mozilla.com/wpush/v2/x",
            "https://updates.push.services.mozilla.com",
        ),
        ("https://user:secret@web.push.apple.com/x", "https://web.push.apple.com"),
        ("https://bücher.example/push/x", "https://xn--bcher-kva.example"),
    ],
)
def test_the_audience_is_the_push_services_origin_as_it_writes_it(
    endpoint: str, origin: str
) -> None:
    signer = VapidSigner(generate_keys().private_key, "mailto:ops@example.com")
    assert _aud(signer.headers(endpoint)) == origin


def test_spellings_of_one_origin_share_one_cached_header() -> None:
    signer = VapidSigner(generate_keys().private_key, "mailto:ops@example.com")
    first = signer.headers("https://fcm.googleapis.com/fcm/send/a")
    assert signer.headers("https://FCM.googleapis.com:443/fcm/send/b") is first
    assert signer.cached_origins == 1
