"""POST /api/webhooks/payments: signed deliveries change the payment once; forged, stale,
replayed, malformed and oversized ones write nothing, each with a clear answer and log line."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from decimal import Decimal
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from aiohttp.test_utils import TestServer

from tests.conftest import StartServer
from tests.helpers import base_url, marker_arrived, sio_client, token
from tests.payments_helpers import (
    WEBHOOK,
    WEBHOOK_SECRET,
    add_payment,
    create_payments_table,
    payments_section,
    post_webhook,
    stripe_event,
)
from tiffin_rt import logs
from tiffin_rt.core.webhook_signature import sign
from tiffin_rt.keys import SETTINGS
from tiffin_rt.logs import ClientFaultBudget

MAX_BYTES = 4096


@pytest.fixture
async def served(start_server: StartServer, db: asyncpg.Connection) -> tuple[TestServer, str]:
    await create_payments_table(db)
    server = await start_server(payments=payments_section(webhook_max_bytes=MAX_BYTES))
    await add_payment(db, 1, Decimal("14.50"), "EUR", reference="pi_1")
    return server, base_url(server)


@pytest.fixture
def fault_budget(monkeypatch: pytest.MonkeyPatch) -> ClientFaultBudget:
    """A client-fault budget of this test's own: earlier tests in this process may have spent
    the shared one's lines for the current window."""
    budget = ClientFaultBudget()
    monkeypatch.setattr(logs, "CLIENT_FAULTS", budget)
    return budget


async def _written(db: asyncpg.Connection) -> tuple[int, int, list[str]]:
    """Webhook ids taken, payment events logged, payment statuses: what a delivery changes."""
    return (
        await db.fetchval("SELECT count(*) FROM tiffin_rt.payment_webhooks"),
        await db.fetchval("SELECT count(*) FROM tiffin_rt.events WHERE kind = 'payment_status'"),
        [r["status"] for r in await db.fetch("SELECT status FROM payments ORDER BY id")],
    )


async def test_a_signed_delivery_changes_the_payment_once_and_a_replay_writes_nothing(
    served: tuple[TestServer, str], db: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    server, url = served
    settings = server.app[SETTINGS]
    client, received = await sio_client(
        url, token(settings, "alice"), events=("paymentStatusUpdate", "notification")
    )
    try:
        body = stripe_event("evt_1", "pi_1", "succeeded")
        status, answer = await post_webhook(url, body)
        assert (status, answer) == (
            200,
            {
                "received": True,
                "eventId": "evt_1",
                "duplicate": False,
                "changed": True,
                "outcome": "changed",
                "status": "succeeded",
            },
        )
        # The provider retries (it did not see our answer), and replays an old capture.
        status, answer = await post_webhook(url, body)
        assert (status, answer["duplicate"], answer["changed"]) == (200, True, False)
        status, answer = await post_webhook(url, stripe_event("evt_1", "pi_1", "refunded"))
        assert (status, answer["duplicate"]) == (200, True)  # the id decides, not the body
        # Another event with the status the payment has: taken, nothing to log.
        status, answer = await post_webhook(url, stripe_event("evt_2", "pi_1", "succeeded"))
        assert (status, answer["duplicate"], answer["changed"]) == (200, False, False)

        await marker_arrived(db, "alice", received)
        [update] = received.of("paymentStatusUpdate")
        assert (update["status"], update["previousStatus"]) == ("succeeded", "pending")
        assert [n["title"] for n in received.of("notification")] == [
            "Payment of €14.50 pending",  # unread when the client connected: the inbox sends it
            "Payment of €14.50 received",
        ]
        assert await _written(db) == (2, 2, ["succeeded"])  # insert + the one change
        assert WEBHOOK_SECRET not in caplog.text
    finally:
        await client.disconnect()


async def test_concurrent_deliveries_of_one_event_change_the_payment_once(
    served: tuple[TestServer, str], db: asyncpg.Connection
) -> None:
    _, url = served
    body = stripe_event("evt_same", "pi_1", "succeeded")
    answers = await asyncio.gather(*(post_webhook(url, body) for _ in range(8)))
    assert sorted(a["duplicate"] for _, a in answers) == [False] + [True] * 7
    assert {s for s, _ in answers} == {200}
    assert await _written(db) == (1, 2, ["succeeded"])


def _forged_headers(body: bytes) -> dict[str, str]:
    now = int(time.time())
    good = sign(body, WEBHOOK_SECRET.encode(), now)
    return {
        "another secret": sign(body, b"whsec_someone_else_0123456789abcdef", now),
        "another body": sign(body + b" ", WEBHOOK_SECRET.encode(), now),
        "another time": good.replace(f"t={now}", f"t={now - 1}"),
        "no v1": f"t={now}",
        "no t": good.split(",", 1)[1],
        "two t": f"t={now},{good}",
        "v0 only": good.replace("v1=", "v0="),
        "not hex": f"t={now},v1=zz",
        "empty": "",
        "garbage": "Bearer abc",
        "t not a number": good.replace(f"t={now}", "t=²"),
        "too long": good + ",v1=" + "0" * 4000,
        "many signatures": good + ",v1=00" * 9,
    }


async def test_forged_signatures_answer_401_and_write_nothing(
    served: tuple[TestServer, str],
    db: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
    fault_budget: ClientFaultBudget,
) -> None:
    _, url = served
    body = stripe_event("evt_forged", "pi_1", "refunded")
    before = await _written(db)
    caplog.set_level(logging.WARNING)
    for what, header in _forged_headers(body).items():
        status, answer = await post_webhook(url, body, header=header)
        assert (status, answer["error"]["code"]) == (401, "unauthorized"), what
    async with (
        aiohttp.ClientSession() as http,
        http.post(url + WEBHOOK, data=body) as response,  # no signature header at all
    ):
        assert response.status == 401
    assert await _written(db) == before
    # Each refusal is a client fault: counted, and written within the process's budget (a
    # flood of them is a few lines, see test_a_flood_of_forged_deliveries_...).
    assert fault_budget.total == len(_forged_headers(body)) + 1
    refused = [r for r in caplog.records if "payment webhook" in r.getMessage()]
    assert refused
    assert all("refused: " in r.getMessage() for r in refused)
    assert WEBHOOK_SECRET not in caplog.text


@pytest.mark.parametrize(
    ("skew", "said"),
    [
        (-302, r"the signed time is 30\d s old"),
        (-86400 * 365, r"the signed time is 3153600[01] s old"),
        (302, r"the signed time is 30\d s in the future"),
    ],
)
async def test_a_stale_or_future_timestamp_answers_400_and_writes_nothing(
    served: tuple[TestServer, str],
    db: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
    fault_budget: ClientFaultBudget,
    skew: int,
    said: str,
) -> None:
    _, url = served
    before = await _written(db)
    body = stripe_event(f"evt_stale{skew}", "pi_1", "refunded")
    status, answer = await post_webhook(url, body, at=time.time() + skew)
    assert (status, answer["error"]["code"]) == (400, "stale_timestamp")
    # The operator (and the provider's dashboard) is told which way the clocks differ.
    assert re.fullmatch(said + r"; at most 300 s are accepted", answer["error"]["message"])
    assert re.search(said, caplog.text)
    assert await _written(db) == before
    # Within the tolerance it is taken: the check is the window, not exact time.
    status, answer = await post_webhook(url, body, at=time.time() - 290)
    assert (status, answer["changed"]) == (200, True)


NOW = 1764617301
PI = {"id": "pi_1", "status": "failed"}
MALFORMED: dict[str, Any] = {
    "not json": b"{not json",
    "a list": [1, 2],
    "a string": "evt",
    "no id": {"created": NOW, "data": {"object": PI}},
    "number id": {"id": 7, "created": NOW, "data": {"object": PI}},
    "empty id": {"id": "", "created": NOW, "data": {"object": PI}},
    "NUL in id": {"id": "evt\u0000", "created": NOW, "data": {"object": PI}},
    "huge id": {"id": "e" * 256, "created": NOW, "data": {"object": PI}},
    "no created": {"id": "evt_m", "data": {"object": PI}},
    "created a string": {"id": "evt_m", "created": str(NOW), "data": {"object": PI}},
    "created in ms": {"id": "evt_m", "created": NOW * 1000, "data": {"object": PI}},
    "created a float": {"id": "evt_m", "created": NOW + 0.5, "data": {"object": PI}},
    "created true": {"id": "evt_m", "created": True, "data": {"object": PI}},
    "created negative": {"id": "evt_m", "created": -NOW, "data": {"object": PI}},
    "created in 5138": {"id": "evt_m", "created": 10**11, "data": {"object": PI}},
    "type a number": {"id": "evt_m", "type": 3, "created": NOW, "data": {"object": PI}},
    "type empty": {"id": "evt_m", "type": "", "created": NOW, "data": {"object": PI}},
    "no data": {"id": "evt_m", "created": NOW},
    "data a list": {"id": "evt_m", "created": NOW, "data": [{"object": {}}]},
    "status a number": {
        "id": "evt_m",
        "created": NOW,
        "data": {"object": {"id": "pi_1", "status": 2}},
    },
    "status null": {
        "id": "evt_m",
        "created": NOW,
        "data": {"object": {"id": "pi_1", "status": None}},
    },
    "status huge": {
        "id": "evt_m",
        "created": NOW,
        "data": {"object": {"id": "pi_1", "status": "s" * 65}},
    },
    "status with a newline": {
        "id": "evt_m",
        "created": NOW,
        "data": {"object": {"id": "pi_1", "status": "a\nb"}},
    },
    "reference a bool": {
        "id": "evt_m",
        "created": NOW,
        "data": {"object": {"id": True, "status": "failed"}},
    },
    "intent event, status null": {
        "id": "evt_m",
        "type": "payment_intent.succeeded",
        "created": NOW,
        "data": {"object": {"id": "pi_1", "object": "payment_intent", "status": None}},
    },
    "refund of a charge whose intent is a number": {
        "id": "evt_m",
        "type": "charge.refunded",
        "created": NOW,
        "data": {
            "object": {"id": "ch_1", "object": "charge", "payment_intent": 5, "refunded": True}
        },
    },
}


async def test_malformed_bodies_answer_400_and_write_nothing(
    served: tuple[TestServer, str], db: asyncpg.Connection
) -> None:
    _, url = served
    before = await _written(db)
    for what, doc in MALFORMED.items():
        body = doc if isinstance(doc, bytes) else orjson.dumps(doc)
        status, answer = await post_webhook(url, body)  # correctly signed: the body is wrong
        assert (status, answer["error"]["code"]) == (400, "bad_request"), what
    past_bigint = b'{"id": "evt_m", "created": 1180591620717411303424, "data": {"object": {}}}'
    for raw in (b"\xff\xfe", b'{"id": NaN}', '{"id": "é"}'.encode("latin-1"), past_bigint):
        status, answer = await post_webhook(url, raw)
        assert (status, answer["error"]["code"]) == (400, "bad_request"), raw
    assert await _written(db) == before


async def test_an_oversized_body_answers_413_and_writes_nothing(
    served: tuple[TestServer, str], db: asyncpg.Connection
) -> None:
    _, url = served
    before = await _written(db)
    body = orjson.dumps(
        {
            "id": "evt_big",
            "data": {"object": {"id": "pi_1", "status": "failed"}},
            "pad": "x" * MAX_BYTES,
        }
    )
    status, answer = await post_webhook(url, body)
    assert (status, answer["error"]["code"]) == (413, "too_large")

    async def chunked() -> Any:  # no Content-Length: refused while reading
        for _ in range(8):
            yield b"x" * 1024

    async with (
        aiohttp.ClientSession() as http,
        http.post(
            url + WEBHOOK, data=chunked(), headers={"Stripe-Signature": "t=1,v1=00"}
        ) as response,
    ):
        assert response.status == 413
    assert await _written(db) == before
    status, _ = await post_webhook(url, stripe_event("evt_ok", "pi_1", "failed"))
    assert status == 200  # the server took the next delivery as usual


async def test_an_unknown_payment_answers_404_and_is_taken_once_the_payment_exists(
    served: tuple[TestServer, str], db: asyncpg.Connection
) -> None:
    _, url = served
    body = stripe_event("evt_early", "pi_later", "authorized")
    before = await _written(db)
    status, answer = await post_webhook(url, body)
    assert (status, answer["error"]["code"]) == (404, "not_found")
    assert await _written(db) == before  # the id is not taken: the provider's retry counts
    await add_payment(db, 2, Decimal("8.90"), "EUR", reference="pi_later")
    status, answer = await post_webhook(url, body)
    assert (status, answer["changed"]) == (200, True)


async def test_no_route_without_a_webhook_secret(
    start_server: StartServer, db: asyncpg.Connection
) -> None:
    await create_payments_table(db)
    server = await start_server(payments=payments_section(webhook_secret=""))
    status, answer = await post_webhook(base_url(server), stripe_event("e", "pi_1", "failed"))
    assert (status, answer["error"]["code"]) == (404, "not_found")


async def test_a_provider_that_leaves_mid_body_writes_nothing(
    served: tuple[TestServer, str], db: asyncpg.Connection
) -> None:
    server, url = served
    before = await _written(db)
    body = stripe_event("evt_cut", "pi_1", "failed")
    header = sign(body, WEBHOOK_SECRET.encode(), int(time.time()))
    assert server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        f"POST {WEBHOOK} HTTP/1.1\r\nHost: x\r\nStripe-Signature: {header}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body[: len(body) // 2]
    )
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    del reader
    status, answer = await post_webhook(url, body)  # the provider's retry, whole
    assert (status, answer["duplicate"], answer["changed"]) == (200, False, True)
    assert await _written(db) == (before[0] + 1, before[1] + 1, ["failed"])


@pytest.mark.parametrize("ahead", [86400 * 365, 400])
async def test_an_event_created_after_it_was_signed_is_refused_and_never_freezes_the_payment(
    served: tuple[TestServer, str], db: asyncpg.Connection, ahead: int
) -> None:
    """An event cannot have happened after its delivery was signed: a `created` in the future
    (a provider's or a replay script's clock, a milliseconds slip) applied as the newest would
    have every real delivery of that payment answered 'superseded', so acknowledged and
    dropped, for the retention's 30 days: the customer would never hear of the refund."""
    _, url = served
    before = await _written(db)
    signed = int(time.time())
    future = stripe_event("evt_future", "pi_1", "succeeded", created=signed + ahead)
    status, answer = await post_webhook(url, future, at=signed)
    assert (status, answer["error"]["code"]) == (400, "bad_request")
    assert re.fullmatch(
        r"created: \d+ s after the delivery was signed \(t=\d+\); at most 300 s are accepted",
        answer["error"]["message"],
    ), answer
    assert await _written(db) == before
    # The payment's real events still apply.
    status, answer = await post_webhook(url, stripe_event("evt_real", "pi_1", "refunded"))
    assert (status, answer["outcome"]) == (200, "changed")
    assert (await _written(db))[2] == ["refunded"]


async def test_a_flood_of_forged_deliveries_is_a_few_warnings_and_keeps_the_admin_view(
    served: tuple[TestServer, str],
    db: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
    fault_budget: ClientFaultBudget,
) -> None:
    """The webhook is the one route anyone may POST to unsigned: forged, stale (a replayed
    capture), malformed and oversized deliveries are what a client did wrong. A flood of them
    is counted, written as a few lines per window, and never pushes the server's own errors
    out of the admin view."""
    server, url = served
    settings = server.app[SETTINGS]
    caplog.set_level(logging.WARNING)
    logging.getLogger("tiffin_rt.example").error("a real error the operator must see")
    before = await _written(db)
    body = stripe_event("evt_flood", "pi_1", "refunded")
    now = int(time.time())
    kinds: list[tuple[bytes, str]] = [
        (body, sign(body, b"whsec_someone_else_0123456789abcdef", now)),
        (body, sign(body, WEBHOOK_SECRET.encode(), now - 3600)),  # a replayed capture
        (b'{"id": 7}', sign(b'{"id": 7}', WEBHOOK_SECRET.encode(), now)),
        (b"x" * (MAX_BYTES + 1), "t=1,v1=00"),
    ]
    sem = asyncio.Semaphore(16)

    async def one(n: int) -> int:
        payload, header = kinds[n % len(kinds)]
        async with sem:
            return (await post_webhook(url, payload, header=header))[0]

    statuses = await asyncio.gather(*(one(n) for n in range(200)))
    assert sorted(set(statuses)) == [400, 401, 413]
    assert await _written(db) == before
    lines = [r for r in caplog.records if r.name == "tiffin_rt.transports.payment_webhook"]
    assert lines, "the first refusals are logged"
    assert len(lines) <= 2 * ClientFaultBudget.LINES_PER_WINDOW, [r.getMessage() for r in lines]
    assert all(r.levelno == logging.WARNING for r in lines)
    assert fault_budget.total == 200  # each one counted, if not written
    admin = {"Authorization": f"Bearer {token(settings, 'root', 'admin')}"}
    async with aiohttp.ClientSession() as http, http.get(url + "/admin/state", headers=admin) as r:
        assert r.status == 200
        state: dict[str, Any] = await r.json()
    messages = [e["message"] for e in state["recentErrors"]]
    assert "a real error the operator must see" in messages
    assert not [e for e in state["recentErrors"] if "webhook from" in e["message"]]
    assert WEBHOOK_SECRET not in caplog.text
