"""The page at `/` with batching on: a burst reaches it as a few notifications and one
`notificationDigest`, and the page shows every held notification it names and an exact badge."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, expect

from tests.helpers import base_url, make_settings
from tests.test_web_page import chromium, open_as
from tiffin_rt.app import create_app


@pytest.fixture
async def batching_demo(
    dsn: str, aiohttp_server: Callable[..., Awaitable[TestServer]]
) -> TestServer:
    settings = make_settings(
        dsn,
        demo={"enabled": True},
        batching={"enabled": True, "max_per_window": 5, "window_seconds": 2, "digest_items": 3},
    )
    return await aiohttp_server(create_app(settings), host="127.0.0.1", shutdown_timeout=3)


@pytest.fixture
async def browser(batching_demo: TestServer) -> AsyncIterator[Browser]:
    async with chromium() as browser:
        yield browser


async def test_a_digest_shows_its_notifications_a_toast_and_the_exact_unread_count(
    browser: Browser, batching_demo: TestServer, db: asyncpg.Connection
) -> None:
    page = await open_as(browser, base_url(batching_demo), "alice")
    for n in range(8):
        await db.execute(
            "SELECT tiffin_rt.notify_user('alice', 'promo', $1, 'body', '{}'::jsonb)", f"deal {n}"
        )
    # Five come one by one; the other three are held for one digest at the window's end.
    await expect(page.locator(".toast").filter(has_text="3 new notifications")).to_be_visible()
    await expect(page.locator("#badge")).to_have_text("8")
    listed = page.locator("#notification-list li strong")
    await expect(listed).to_have_count(8)
    titles = set(await listed.all_inner_texts())
    assert titles == {f"deal {n}" for n in range(8)}

    # The marker after it: one more, counted once.
    await db.execute("SELECT tiffin_rt.notify_user('alice', 'promo', 'marker', 'b', '{}'::jsonb)")
    await expect(listed).to_have_count(9)
    await expect(page.locator("#badge")).to_have_text("9")
