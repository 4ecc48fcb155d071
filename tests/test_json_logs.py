"""server.log_format: json — every line of a real `tiffin-rt serve` parses, names its level,
logger and message, the request or connection it is about, and never holds a token."""

from __future__ import annotations

import json
import logging
import sys
import time

import aiohttp
import jwt

from tests.cluster_nodes import StartCluster
from tests.helpers import TEST_SECRET, connect_refusal, sio_client, token
from tiffin_rt.logs import JsonLines

SCRAPE_TOKEN = "scrape-token-for-the-json-log-test"
ORDER_1 = "/api/notifications/orders/1/status"


async def test_every_line_of_a_served_node_is_json_without_a_token(
    cluster_nodes: StartCluster,
) -> None:
    cluster = await cluster_nodes(
        1,
        server={"log_format": "json", "access_log": True},
        logging={"level": "DEBUG"},
        metrics={"enabled": True, "token": SCRAPE_TOKEN},
    )
    node = cluster[0]
    url, settings = node.url, cluster.settings
    good = token(settings, "alice")
    expired = token(settings, "alice", ttl=-60)
    forged = jwt.encode({"sub": "eve", "exp": int(time.time()) + 60}, "x" * 40, "HS256")
    opaque = "opaque-refresh-value-0123456789"
    secrets = [good, expired, forged, SCRAPE_TOKEN, opaque]

    async with aiohttp.ClientSession() as http:
        for tok in (good, expired, forged):
            async with http.get(url + ORDER_1, params={"access_token": tok}) as response:
                if response.status != 200:
                    await response.read()
            async with http.get(
                url + ORDER_1, headers={"Authorization": f"Bearer {tok}"}
            ) as response:
                assert response.status in (200, 401)
        async with http.get(
            url + "/metrics", headers={"Authorization": f"Bearer {SCRAPE_TOKEN[:-1]}"}
        ) as response:
            assert response.status == 401
        async with http.get(
            url + "/healthz", headers={"X-Request-ID": "proxy-id-12345678"}
        ) as response:
            assert response.headers["X-Request-ID"] == "proxy-id-12345678"
        async with http.get(
            f"{url}/socket.io/?EIO=4&transport=polling&sid=nope&access_token={good}"
        ) as response:
            assert response.status == 400
    for tok in (expired, forged, opaque):
        await connect_refusal(url, {"token": tok})
    client, _ = await sio_client(url, good)
    try:
        ack = await client.call("refreshToken", {"token": opaque}, namespace="/notifications")
        assert ack["error"]["code"] == "unauthorized"
        ack = await client.call("joinRoom", "order-1", namespace="/notifications")
        assert ack["ok"] is True
    finally:
        await client.disconnect()
    assert await cluster.terminate(node) == 0

    lines = [line for line in node.output().splitlines() if line.strip()]
    assert len(lines) > 10
    parsed = []
    for line in lines:
        doc = json.loads(line)  # every line, startup and shutdown included
        assert {"time", "level", "logger", "message"} <= doc.keys(), line
        assert doc["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
        parsed.append(doc)
    text = "\n".join(lines)
    for secret in secrets:
        for part in secret.split("."):
            if part != "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9":  # the JWT header every one shares
                assert part not in text, part
    assert "access_token=" not in text
    access = [d for d in parsed if d["logger"] == "aiohttp.access"]
    assert access
    assert all("request_id" in d for d in access)
    assert any(d.get("request_id") == "proxy-id-12345678" for d in access)
    assert any("connection_id" in d for d in parsed)


def test_formatter_masks_tokens_in_messages_exceptions_and_never_copies_extras() -> None:
    secret = jwt.encode({"sub": "a"}, TEST_SECRET, "HS256")
    logger = logging.getLogger("tiffin_rt.example")
    try:
        raise ValueError(f"bad token {secret} in Authorization: Bearer opaque-value-1234")
    except ValueError:
        record = logger.makeRecord(
            logger.name,
            logging.ERROR,
            __file__,
            1,
            "auth payload %s, url /x?access_token=%s",
            ({"token": "opaque-payload-5678"}, "opaque-query-9999"),
            sys.exc_info(),
            extra={"token": secret, "headers": {"Authorization": "Bearer opaque-value-1234"}},
        )
    line = JsonLines().format(record)
    doc = json.loads(line)
    assert set(doc) == {"time", "level", "logger", "message", "exception"}
    for leaked in (secret, "opaque-value-1234", "opaque-payload-5678", "opaque-query-9999"):
        assert leaked not in line
    assert doc["level"] == "ERROR"
    assert doc["logger"] == "tiffin_rt.example"
    assert "ValueError" in doc["exception"]
