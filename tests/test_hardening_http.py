"""Every HTTP error answers the JSON error shape, aiohttp's own refusals included."""

from __future__ import annotations

import aiohttp

from tests.conftest import StartServer
from tests.helpers import base_url, make_settings, token


async def test_aiohttps_own_404_405_and_413_answer_the_json_error_shape(
    start_server: StartServer, dsn: str
) -> None:
    settings = make_settings(dsn, demo={"enabled": True})
    url = base_url(await start_server(settings))
    auth = {"Authorization": f"Bearer {token(settings, 'alice')}"}
    too_big = b"{" + b" " * (settings.limits.max_message_bytes + 1) + b"}"
    async with aiohttp.ClientSession() as http:
        for method, path, body, status, code in (
            ("GET", "/api/nothing-here", None, 404, "not_found"),
            ("GET", "/api/notifications/read-all", None, 405, "method_not_allowed"),
            ("OPTIONS", "/api/notifications", None, 405, "method_not_allowed"),
            ("POST", "/api/demo/token", too_big, 413, "too_large"),
        ):
            async with http.request(method, url + path, headers=auth, data=body) as response:
                assert response.status == status, path
                assert response.content_type == "application/json", path
                error = (await response.json())["error"]
                assert error["code"] == code, path
                assert error["message"], path
                if status == 405:
                    assert "POST" in response.headers["Allow"] or method == "OPTIONS"
