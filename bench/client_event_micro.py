"""The Python cost of dispatching one client event, around a handler that does nothing.

Builds a SecureNamespace (the base of /notifications and /support) with the limits and token
verifier `tiffin-rt serve` builds from a config, one authenticated connection, and a handler
`on_noop(sid, data)`, then awaits `client_event("noop", sid, {...})` EVENTS times: the checks,
the rate limits, the arity check and the call. Also times the arity check alone. What it prints
is what tiffin_rt spends per client event before the handler's own work:

  .venv/bin/python -m bench.client_event_micro [--events 100000]
"""

from __future__ import annotations

import argparse
import inspect
import time
from typing import Any

from tiffin_rt.auth import Identity, TokenVerifier
from tiffin_rt.config import Settings
from tiffin_rt.ratelimit import RateLimits
from tiffin_rt.transports.socketio.secure import Connection, SecureNamespace

SID = "bench-sid"
UNLIMITED = "1000000000/second"


class BenchNamespace(SecureNamespace):
    async def on_noop(self, sid: str, data: Any = None) -> dict[str, bool]:
        return {"ok": True}


def namespace() -> BenchNamespace:
    settings = Settings.model_validate(
        {
            "auth": {"jwt_secret": "x" * 40},
            "limits": {"events_per_connection": UNLIMITED, "events_per_user": UNLIMITED},
        }
    )
    ns = BenchNamespace(
        "/bench", verifier=TokenVerifier(settings.auth), limits=RateLimits(settings.limits)
    )
    ns._connections[SID] = Connection(
        SID, Identity(user_id="u1", role="customer", vendor_id=None, expires_at=None)
    )
    return ns


async def main(events: int) -> None:
    ns = namespace()
    data = {"orderId": "1"}
    for _ in range(1000):  # warm up
        await ns.client_event("noop", SID, data)
    started = time.perf_counter()
    for _ in range(events):
        ack = await ns.client_event("noop", SID, data)
    elapsed = time.perf_counter() - started
    assert ack == {"ok": True}, ack
    print(f"client_event: {elapsed * 1e6 / events:.2f} us per event ({events} events)")
    handler = ns.on_noop
    started = time.perf_counter()
    for _ in range(events):
        inspect.signature(handler).bind(SID, data)
    elapsed = time.perf_counter() - started
    print(f"inspect.signature(handler).bind alone: {elapsed * 1e6 / events:.2f} us per call")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    import uvloop

    uvloop.run(main(args.events))
