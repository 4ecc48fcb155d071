"""Protocol abuse the parity module (test_transport_parity.py) does not cover path by path.

Long-polling POSTs that must end their session are answered at once even when no GET is
waiting (before, the POST waited for a GET that was then refused, holding its socket open),
and reserved event names are refused on /support as on /notifications.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from tests.conftest import StartServer
from tests.helpers import base_url, make_settings, token
from tests.raw_engineio import ack, connect_namespace, raw_session

LIMIT = 4096


async def polling_session(http: aiohttp.ClientSession, url: str, tok: str) -> str:
    """A long-polling session joined to /notifications, with no GET left waiting."""
    async with http.get(f"{url}/socket.io/?EIO=4&transport=polling") as response:
        sid: str = json.loads((await response.text())[1:])["sid"]
    endpoint = f"{url}/socket.io/?EIO=4&transport=polling&sid={sid}"
    connect = "40/notifications," + json.dumps({"token": tok})
    async with http.post(endpoint, data=connect.encode()) as response:
        assert response.status == 200
    async with http.get(endpoint) as response:
        assert (await response.text()).startswith("40/notifications,")
    return endpoint


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"abc", 400, "bad_request"),  # no Engine.IO packet type
        (b"", 400, "bad_request"),  # an empty payload
        (b"\xff\xfe", 400, "bad_request"),  # not UTF-8
        (b"4abc", 400, "bad_request"),  # no Socket.IO packet type
        (b'42/notifications,[{"joinRoom":1}]', 400, "bad_request"),
        (b"4" + b"x" * LIMIT, 413, "too_large"),
    ],
    ids=["abc", "empty", "not-utf8", "socketio", "object-name", "too-large"],
)
async def test_bad_posts_are_answered_at_once_and_end_the_session(
    start_server: StartServer, dsn: str, body: bytes, status: int, code: str
) -> None:
    settings = make_settings(dsn, limits={"max_message_bytes": LIMIT})
    url = base_url(await start_server(settings))
    async with aiohttp.ClientSession() as http:
        endpoints = [
            await polling_session(http, url, token(settings, f"user{n}")) for n in range(3)
        ]

        async def post(endpoint: str) -> tuple[int, object]:
            async with http.post(endpoint, data=body) as response:
                return response.status, await response.json()

        # Bounded only so that a POST left unanswered fails the test instead of hanging it.
        answers = await asyncio.wait_for(asyncio.gather(*map(post, endpoints)), 20)
        for answer_status, answer in answers:
            assert answer_status == status
            assert answer["error"]["code"] == code  # type: ignore[index]
        for endpoint in endpoints:
            async with http.get(endpoint) as response:
                assert response.status == 400  # the session is gone
        async with http.get(f"{url}/healthz") as response:
            assert (await response.json())["connections"]["socketio"] == 0


@pytest.mark.parametrize("path", ["websocket", "polling"])
async def test_reserved_event_names_are_unknown_events_on_support(
    start_server: StartServer, dsn: str, path: str
) -> None:
    settings = make_settings(dsn)
    url = base_url(await start_server(settings))
    ns = "/support"
    async with raw_session(url, path) as session:
        await connect_namespace(session, ns, token(settings, "alice"))
        for number, name in enumerate(["disconnect", "connect", "connect_error"], start=1):
            args = [name, {"token": token(settings, "agent", "support")}]
            await session.send(f"42{ns},{number}" + json.dumps(args))
            [answer] = await ack(session, ns, number)
            assert answer["error"]["code"] == "unknown_event", name
        # Still connected as alice (a customer): listing conversations gives her own only.
        await session.send(f'42{ns},9["listConversations",{{}}]')
        [answer] = await ack(session, ns, 9)
        assert answer["ok"] is True
        assert answer["conversations"] == []
