"""The customer's page in a real headless Chromium: the rider moves on the order card's map."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, expect

from tests.helpers import base_url, make_settings, sio_client, token
from tests.test_web_page import chromium, open_as
from tiffin_rt.app import create_app
from tiffin_rt.keys import SETTINGS

NS = "/notifications"


@pytest.fixture
async def tracked_demo(
    dsn: str, aiohttp_server: Callable[..., Awaitable[TestServer]]
) -> TestServer:
    settings = make_settings(
        dsn,
        demo={"enabled": True},
        tracking={
            "updates_per_rider": "20/second",
            "destination_lat_column": "delivery_lat",
            "destination_lng_column": "delivery_lng",
        },
    )
    return await aiohttp_server(create_app(settings), host="127.0.0.1", shutdown_timeout=3)


@pytest.fixture
async def browser(tracked_demo: TestServer) -> AsyncIterator[Browser]:
    async with chromium() as browser:
        yield browser


async def test_the_customer_sees_the_rider_move_on_the_map_until_delivery(
    browser: Browser, tracked_demo: TestServer, db: asyncpg.Connection, tmp_path: Path
) -> None:
    base = base_url(tracked_demo)
    alice = await open_as(browser, base, "alice")
    card = alice.locator('#customer-orders [data-order-id="1"]')
    await expect(card).to_have_attribute("data-status", "pending")
    await expect(card.locator(".rider-map")).to_have_count(0)  # no position yet

    rita, _ = await sio_client(base, token(tracked_demo.app[SETTINGS], "rita", "rider"))
    try:
        path = [(12.9716 - 0.004 * n, 77.5946 + 0.003 * n) for n in range(4)]
        for lat, lng in path[:2]:
            ack = await rita.call(
                "locationUpdate",
                {
                    "orderId": "1",
                    "lat": lat,
                    "lng": lng,
                    "heading": 140,
                    "timestamp": int(time.time() * 1000),
                },
                namespace=NS,
            )
            assert ack["ok"], ack
        rider = card.locator(".rider-map .rider")
        await expect(rider).to_have_attribute("data-lat", str(path[1][0]))
        first_x = await rider.get_attribute("data-x")
        caption = card.locator(".rider-map figcaption")
        await expect(caption).to_contain_text("Rider rita")
        await expect(caption).to_contain_text("min away (estimate")
        await alice.screenshot(path=str(tmp_path / "rider-on-map.png"))

        for lat, lng in path[2:]:
            ack = await rita.call(
                "locationUpdate",
                {"orderId": "1", "lat": lat, "lng": lng, "timestamp": int(time.time() * 1000)},
                namespace=NS,
            )
            assert ack["ok"], ack
        await expect(rider).to_have_attribute("data-lat", str(path[3][0]))
        assert await rider.get_attribute("data-x") != first_x
        # The trail is what the page saw: at least where the rider started and where it is
        # now (a page that was busy may have been handed only the newest of the positions in
        # between: latest wins), ending at the rider.
        trail = await card.locator(".rider-map .trail").get_attribute("points")
        assert trail is not None
        points = trail.split()
        assert 2 <= len(points) <= len(path)
        assert (
            points[-1]
            == f"{await rider.get_attribute('data-x')},{await rider.get_attribute('data-y')}"
        )

        # a page opened now gets the last position at once
        late = await open_as(browser, base, "alice")
        await expect(
            late.locator('#customer-orders [data-order-id="1"] .rider-map .rider')
        ).to_have_attribute("data-lat", str(path[3][0]))

        await db.execute("UPDATE orders SET status = 'delivered' WHERE id = 1")
        await expect(card).to_have_attribute("data-status", "delivered")
        await expect(card.locator(".rider-map")).to_have_count(0)
    finally:
        await rita.disconnect()
