"""A lying client's deeply nested array (the JSON parser reads about a thousand levels) where a
number, id or text belongs is refused `invalid_payload` naming the field, on every transport and
namespace: the error message names an array or object instead of quoting it (its repr raised
RecursionError, and the client got `internal` for its own bad input, logged as a server fault).
"""

from __future__ import annotations

import logging

import pytest
from aiohttp.test_utils import TestServer

from tests.conftest import StartServer
from tests.helpers import base_url, token
from tests.raw_engineio import ack, connect_namespace, raw_session
from tiffin_rt.config import Settings

DEEP = "[" * 985 + "]" * 985
OBJECT = '{"a":' * 985 + "1" + "}" * 985
POSITION = '{"orderId":"1","lat":12.9,"lng":77.6,"timestamp":%s}'

# (namespace, role, event, raw JSON argument, what the message says)
CASES = [
    ("/notifications", "rider", "locationUpdate", POSITION.replace('"1"', DEEP) % 1, "orderId"),
    ("/notifications", "rider", "locationUpdate", POSITION.replace("12.9", DEEP) % 1, "lat: "),
    ("/notifications", "rider", "locationUpdate", POSITION % OBJECT, "timestamp: "),
    ("/notifications", "customer", "markRead", DEEP, "a notification id"),
    ("/notifications", "customer", "markRead", '{"ids":[' + OBJECT + "]}", "a notification id"),
    (
        "/support",
        "customer",
        "joinConversation",
        '{"conversationId":' + DEEP + "}",
        "conversationId",
    ),
    ("/support", "customer", "history", '{"conversationId":1,"limit":' + OBJECT + "}", "limit"),
]


@pytest.fixture
async def tracked(start_server: StartServer) -> TestServer:
    return await start_server()


@pytest.mark.parametrize("path", ["websocket", "polling"])
@pytest.mark.parametrize(
    ("namespace", "role", "event", "argument", "field"),
    CASES,
    ids=[
        f"{c[2]}-{c[4].strip(': ')}-{'array' if c[3].count('[') > 100 else 'object'}" for c in CASES
    ],
)
async def test_a_deeply_nested_value_is_refused_as_invalid_not_internal(
    tracked: TestServer,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
    path: str,
    namespace: str,
    role: str,
    event: str,
    argument: str,
    field: str,
) -> None:
    async with raw_session(base_url(tracked), path) as client:
        await connect_namespace(client, namespace, token(settings, "rita", role))
        await client.send(f'42{namespace},7["{event}",{argument}]')
        [answer] = await ack(client, namespace, 7)
        assert answer["ok"] is False, answer
        assert answer["error"]["code"] == "invalid_payload", answer
        message = answer["error"]["message"]
        assert field in message, message
        assert "(got an array)" in message or "(got an object)" in message, message
        # the connection carries on
        await client.send(f'42{namespace},8["{event}",{argument}]')
        [again] = await ack(client, namespace, 8)
        assert again == answer
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
