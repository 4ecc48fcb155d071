"""The page's kitchen queue in a real headless Chromium: the kitchen's summary and ticket
positions follow its clicks, and the customer's cards say how many orders are ahead."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page, expect

from tests.helpers import base_url, make_settings
from tests.test_web_page import chromium, open_as
from tiffin_rt.app import create_app


@pytest.fixture
async def demo_server(dsn: str, aiohttp_server: Callable[..., Awaitable[TestServer]]) -> TestServer:
    app = create_app(make_settings(dsn, demo={"enabled": True}))
    return await aiohttp_server(app, host="127.0.0.1", shutdown_timeout=3)


@pytest.fixture
async def browser(demo_server: TestServer) -> AsyncIterator[Browser]:
    async with chromium() as browser:
        yield browser


async def advance(kitchen: Page, order_id: str) -> None:
    ticket = kitchen.locator(f'#kitchen-board [data-order-id="{order_id}"]')
    async with kitchen.expect_response(lambda r: r.url.endswith(f"/orders/{order_id}/status")):
        await ticket.locator('[data-action="advance"]').click()


async def test_the_kitchen_queue_and_the_orders_ahead_follow_each_click(
    browser: Browser, demo_server: TestServer, db: asyncpg.Connection, tmp_path: Path
) -> None:
    base = base_url(demo_server)
    customer = await open_as(browser, base, "alice")
    kitchen = await open_as(browser, base, "kitchen-spice-garden")

    summary = kitchen.locator("#kitchen-queue")
    await expect(summary.locator(".queue-waiting b")).to_have_text("3")
    await expect(summary.locator('[data-count="pending"] b')).to_have_text("2")
    await expect(summary.locator('[data-count="confirmed"] b')).to_have_text("1")
    await expect(summary.locator(".avg-prep")).to_have_text("Avg prep —")
    board = kitchen.locator("#kitchen-board")
    for order_id, place in (("2", "1"), ("1", "2"), ("4", "3")):
        position = board.locator(f'[data-order-id="{order_id}"] .queue-pos')
        await expect(position).to_have_attribute("data-position", place)
        await expect(position).to_have_text(f"#{place} in queue")

    first, second = (customer.locator(f'[data-order-id="{i}"] .queue-ahead') for i in "12")
    await expect(first).to_have_text("1 order ahead of yours")
    await expect(second).to_have_text("Your order is next")
    await expect(customer.locator('[data-order-id="4"]')).to_have_count(0)  # bob's

    await advance(kitchen, "2")  # confirmed -> preparing: nothing moves
    await expect(summary.locator('[data-count="preparing"] b')).to_have_text("1")
    await expect(summary.locator('[data-count="confirmed"] b')).to_have_text("0")
    await expect(first).to_have_text("1 order ahead of yours")

    await advance(kitchen, "2")  # preparing -> ready: alice's first order is next
    assert await db.fetchval("SELECT status FROM orders WHERE id = 2") == "ready"
    await expect(first).to_contain_text("Your order is next")
    await expect(second).to_have_count(0)
    await expect(summary.locator('[data-count="ready"] b')).to_have_text("1")
    await expect(summary.locator(".queue-waiting b")).to_have_text("2")
    await expect(summary.locator(".avg-samples")).to_have_text("over 1 order")
    await expect(board.locator('[data-order-id="2"] .queue-pos')).to_have_count(0)
    # with an average, an estimate follows the position
    await expect(board.locator('[data-order-id="1"] .queue-pos')).to_contain_text(
        "#1 in queue · ready ~"
    )
    await expect(first).to_contain_text("(estimate)")

    # a backend change, no click: the page follows as well
    await db.execute("UPDATE orders SET status = 'confirmed' WHERE id = 4")
    await expect(first).to_contain_text("1 order ahead of yours")
    await expect(board.locator('[data-order-id="4"] .queue-pos')).to_contain_text("#1 in queue")

    await kitchen.screenshot(path=str(tmp_path / "kitchen-queue.png"))
    await customer.screenshot(path=str(tmp_path / "customer-queue.png"))


@pytest.mark.parametrize("width", [390])
async def test_the_queue_summary_fits_a_phone_screen(
    browser: Browser, demo_server: TestServer, width: int
) -> None:
    kitchen = await open_as(browser, base_url(demo_server), "kitchen-spice-garden", width=width)
    await expect(kitchen.locator("#kitchen-queue .queue-waiting b")).to_have_text("3")
    assert await kitchen.evaluate("document.documentElement.scrollWidth") <= width
