"""A flood of malformed HTTP requests (bad header bytes, a bad request line) is what a client
does wrong: under `tiffin-rt serve` it is logged as a few one-line WARNINGs and a summary of
the rest, never as one ERROR traceback per request; no token in such a request (a query
parameter, an Authorization or Cookie header) reaches the log, in text or JSON; and the admin
view's recent errors keep the server's own lines."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import aiohttp
import pytest

from tests.cluster_nodes import StartCluster
from tests.conftest import StartServer
from tests.helpers import base_url, eventually, make_settings, token
from tiffin_rt.config import Settings
from tiffin_rt.logs import CLIENT_FAULTS, ClientFaultBudget

OPAQUE = "opaque-secret-0123456789abcdef"
BASIC = "YWxpY2U6aHVudGVyMg"  # base64 of a user:password


def malformed_requests(jwt: str) -> list[bytes]:
    """Requests aiohttp's parser refuses, each carrying a credential somewhere."""
    t, o = jwt.encode(), OPAQUE.encode()
    return [
        b"GET /healthz?token=%s HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n" % o,
        b"GET /healthz?access_token=%s HTTP/1.1\r\nHost: x\r\nX-Bad: \x7f\r\n\r\n" % t,
        b"GET /h?x=1&token=%s HTTP/1.1\r\nAuthorization: Basic %s\r\nBad Header: 1\r\n\r\n"
        % (o, BASIC.encode()),
        b"GET /h HTTP/1.1\r\nAuthorization: Token %s\r\nContent-Length: abc\r\n\r\n" % o,
        b"GET /h HTTP/1.1\r\nCookie: tiffin_rt_token=%s; x=1\r\nX-Bad: a\x00b\r\n\r\n" % o,
        b"GET /h HTTP/1.1\r\nAuthorization: Basic %s\x01\r\n\r\n" % BASIC.encode(),
        b"GET /h HTTP/1.1\r\nAuthorization: Bearer %s\x01\r\n\r\n" % o,
        b"GET /h HTTP/1.1\r\nCookie: tiffin_rt_token=%s\x01\r\n\r\n" % o,
        b"G\x01T /x?token=%s HTTP/1.1\r\nHost: x\r\n\r\n" % o,
        b"GET /x?token=%s HTTP/7.7\r\n\r\n" % o,
        # A good request, then garbage on the same connection (aiohttp's ERROR for a bad method).
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n\x16\x03\x01?token=%s \x00\xff\r\n\r\n" % o,
    ]


def quoting_credentials(jwt: str) -> list[bytes]:
    """Malformed requests whose refused line, quoted in aiohttp's error, holds the credential."""
    t, o = jwt.encode(), OPAQUE.encode()
    return [
        b"GET /x?token=%s HTTP/7.7\r\n\r\n" % o,
        b"GET /x?a=1&access_token=%s HTTP/0.5\r\n\r\n" % t,
        b"GET /h HTTP/1.1\r\nAuthorization: Basic %s\x01\r\n\r\n" % BASIC.encode(),
        b"GET /h HTTP/1.1\r\nAuthorization: Bearer %s\x01\r\n\r\n" % o,
        b"GET /h HTTP/1.1\r\nCookie: tiffin_rt_token=%s\x01\r\n\r\n" % o,
    ]


async def send_raw(port: int, request: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(5):
            while await reader.read(65536):
                pass
    except (ConnectionError, TimeoutError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def flood(port: int, requests: list[bytes], count: int) -> None:
    sem = asyncio.Semaphore(16)

    async def one(i: int) -> None:
        async with sem:
            await send_raw(port, requests[i % len(requests)])

    await asyncio.gather(*(one(i) for i in range(count)))


def assert_no_secret(text: str, jwt: str) -> None:
    for part in jwt.split("."):
        if part != "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9":  # the header every token shares
            assert part not in text, part
    assert OPAQUE not in text
    assert BASIC not in text


async def test_a_flood_of_malformed_requests_is_a_few_warnings_and_a_summary(
    cluster_nodes: StartCluster,
) -> None:
    cluster = await cluster_nodes(1, server={"access_log": True})
    node = cluster[0]
    jwt = token(cluster.settings, "alice")
    before = len(node.output().splitlines())
    await flood(node.port, malformed_requests(jwt), 400)

    def summary() -> list[str]:
        return [line for line in node.output().splitlines() if "more client faults" in line]

    # The rest of the flood is summed up once its window (10 s) has passed, with no new fault.
    await eventually(summary, timeout=ClientFaultBudget.WINDOW_SECONDS + 5)
    lines = node.output().splitlines()[before:]
    text = "\n".join(lines)
    assert "Traceback" not in text
    assert not [line for line in lines if " ERROR " in line], text
    faults = [line for line in lines if "aiohttp.server" in line]
    assert faults, text
    assert all(" WARNING aiohttp.server: " in line for line in faults), text
    # A few lines per window, not 400: the flood may straddle two windows.
    assert len(faults) <= 2 * ClientFaultBudget.LINES_PER_WINDOW, text
    [summed] = summary()
    assert " WARNING " in summed
    assert_no_secret(text, jwt)
    assert await cluster.terminate(node) == 0


async def test_a_malformed_request_holding_a_token_is_logged_masked_in_json(
    cluster_nodes: StartCluster,
) -> None:
    cluster = await cluster_nodes(
        1, server={"log_format": "json", "access_log": True}, logging={"level": "DEBUG"}
    )
    node = cluster[0]
    jwt = token(cluster.settings, "alice")
    requests = quoting_credentials(jwt)
    assert len(requests) <= ClientFaultBudget.LINES_PER_WINDOW  # each one logged
    for request in requests:
        await send_raw(node.port, request)
    assert await cluster.terminate(node) == 0
    lines = [line for line in node.output().splitlines() if line.strip()]
    docs = [json.loads(line) for line in lines]
    faults = [d for d in docs if d["logger"] == "aiohttp.server"]
    assert faults
    assert all(d["level"] in ("WARNING", "DEBUG") and "exception" not in d for d in faults)
    assert len(faults) == len(requests)
    assert all("[redacted]" in d["message"] for d in faults), faults
    assert_no_secret("\n".join(lines), jwt)


async def test_client_faults_never_push_real_errors_out_of_the_admin_view(
    start_server: StartServer, dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings: Settings = make_settings(dsn)
    server = await start_server(settings)
    url = base_url(server)
    assert server.port is not None
    jwt = token(settings, "alice")
    logging.getLogger("tiffin_rt.example").error("a real error the operator must see")
    before = CLIENT_FAULTS.total
    await flood(server.port, malformed_requests(jwt), 300)
    admin = {"Authorization": f"Bearer {token(settings, 'root', 'admin')}"}
    async with aiohttp.ClientSession() as http, http.get(url + "/admin/state", headers=admin) as r:
        assert r.status == 200
        state: dict[str, Any] = await r.json()
    messages = [e["message"] for e in state["recentErrors"]]
    assert "a real error the operator must see" in messages
    assert not [e for e in state["recentErrors"] if e["logger"] == "aiohttp.server"]
    faults = state["clientFaults"]
    assert faults["total"] - before >= 200  # counted, if not logged
    assert faults["suppressed"] > 0
    assert_no_secret(json.dumps(state), jwt)
    # The summary comes when the window ends, while this server runs (not at some later
    # fault), and stays out of the recent errors too.
    summary = await eventually(
        lambda: [r for r in caplog.records if r.name == "tiffin_rt.client_faults"],
        timeout=ClientFaultBudget.WINDOW_SECONDS + 5,
    )
    assert summary[0].levelno == logging.WARNING
    async with aiohttp.ClientSession() as http, http.get(url + "/admin/state", headers=admin) as r:
        state = await r.json()
    assert not [e for e in state["recentErrors"] if "suppressed" in e["message"]]


def test_a_summary_stands_for_what_it_suppressed_at_their_highest_level(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Polls for ended sessions are INFO lines: their summary is INFO too, never a WARNING."""
    caplog.set_level(logging.INFO)
    now = [0.0]
    budget = ClientFaultBudget(clock=lambda: now[0])
    lines = ClientFaultBudget.LINES_PER_WINDOW
    assert [budget.admit(logging.INFO) for _ in range(lines + 3)] == [True] * lines + [False] * 3
    now[0] += ClientFaultBudget.WINDOW_SECONDS
    assert budget.admit(logging.WARNING)  # a new window: the last one's summary first
    [summary] = [r for r in caplog.records if r.name == "tiffin_rt.client_faults"]
    assert summary.levelno == logging.INFO
    assert summary.getMessage().startswith("3 more client faults suppressed in the last 10s")
    assert budget.describe() == {"total": lines + 4, "suppressed": 3}
