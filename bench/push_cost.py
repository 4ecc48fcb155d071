"""What one Web Push costs the worker that sends it, on the event loop's thread: the RFC 8291
aes128gcm encryption pywebpush does for each push (an ephemeral P-256 key, ECDH, HKDF,
AES-GCM), and the VAPID header (an ES256 signature; tiffin_rt signs it once per push service
and reuses it, so this is paid about once per 6 hours per service). The figures in README,
"Web Push".

  python -m bench.push_cost [--pushes 2000] [--bytes 300]
"""

from __future__ import annotations

import argparse
import base64
import secrets
import statistics
import time

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pywebpush import WebPusher

from tiffin_rt.push.vapid import VapidSigner, generate_keys


def _subscription() -> dict[str, object]:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    point = key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    b64 = lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=").decode()  # noqa: E731
    return {
        "endpoint": "https://push.example.com/x",
        "keys": {"p256dh": b64(point), "auth": b64(secrets.token_bytes(16))},
    }


def _per_call_us(call: object, count: int) -> tuple[float, float]:
    """Median and p99 of one call, in microseconds."""
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        call()  # type: ignore[operator]
        samples.append((time.perf_counter() - start) * 1e6)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pushes", type=int, default=2000)
    parser.add_argument("--bytes", type=int, default=300, help="size of the notification JSON")
    args = parser.parse_args()
    body = b"x" * args.bytes
    pusher = WebPusher(_subscription())
    keys = generate_keys()
    signer = VapidSigner(keys.private_key, "mailto:bench@example.com")
    now = [time.time()]

    def sign_fresh() -> None:
        now[0] += 7 * 3600  # past the reuse window: a new signature each time
        signer.headers("https://push.example.com/x", now=now[0])

    encrypt = _per_call_us(lambda: pusher.encode(body, "aes128gcm"), args.pushes)
    fresh = _per_call_us(sign_fresh, args.pushes)
    reused = _per_call_us(lambda: signer.headers("https://push.example.com/x"), args.pushes)
    print(f"{args.pushes} pushes of {args.bytes} bytes; microseconds per push, median / p99")
    print(f"  aes128gcm encryption (WebPusher.encode): {encrypt[0]:.0f} / {encrypt[1]:.0f}")
    print(f"  VAPID header, signed anew:               {fresh[0]:.0f} / {fresh[1]:.0f}")
    print(f"  VAPID header, reused (tiffin_rt's cache): {reused[0]:.1f} / {reused[1]:.1f}")


if __name__ == "__main__":
    main()
