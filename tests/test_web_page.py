"""The page at `/` in a real headless Chromium: a customer watches the kitchen move an order."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.helpers import base_url, make_settings, sio_client, token
from tiffin_rt.app import create_app
from tiffin_rt.web import VENDOR_SCRIPT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 10_000


@pytest.fixture
async def demo_server(
    dsn: str, aiohttp_server: Callable[..., Awaitable[TestServer]]
) -> TestServer:
    # As `tiffin-rt serve` does (server.shutdown_timeout): connections get a few seconds to end.
    app = create_app(make_settings(dsn, demo={"enabled": True}))
    return await aiohttp_server(app, host="127.0.0.1", shutdown_timeout=3)


def check_installed() -> None:
    # `make test` installs Debian's chromium and `make install` the Socket.IO client.
    assert CHROMIUM.exists(), "chromium is missing: run `make test` (it installs it)"
    assert VENDOR_SCRIPT.exists(), "the Socket.IO client is missing: run `make install`"


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    check_installed()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=30_000
        )
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def browser(demo_server: TestServer) -> AsyncIterator[Browser]:
    """Closed before the server, so no open page holds the server's shutdown up."""
    async with chromium() as browser:
        yield browser


async def open_as(
    browser: Browser, base: str, user: str, *, width: int = 1360, height: int = 860
) -> Page:
    context = await browser.new_context(viewport={"width": width, "height": height})
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{base}/#as={user}")
    await expect(page.locator("#conn-socket")).to_have_attribute("data-state", "live")
    assert errors == []
    return page


async def test_kitchen_moves_an_order_and_support_answers_the_customer_live(
    browser: Browser, demo_server: TestServer, db: asyncpg.Connection, tmp_path: Path
) -> None:
    base = base_url(demo_server)
    customer = await open_as(browser, base, "alice")
    kitchen = await open_as(browser, base, "kitchen-spice-garden")

    card = customer.locator('#customer-orders [data-order-id="1"]')
    await expect(card).to_have_attribute("data-status", "pending")
    await expect(card.locator(".stream-tag")).to_have_text("SSE live")
    await expect(customer.locator("#conn-sse")).to_have_attribute("data-state", "live")
    # bob's orders are not on alice's page
    await expect(customer.locator('[data-order-id="3"]')).to_have_count(0)

    ticket = kitchen.locator('#kitchen-board [data-order-id="1"]')
    async with kitchen.expect_response(lambda r: r.url.endswith("/orders/1/status")) as moved:
        await ticket.locator('[data-action="advance"]').click()
    assert (await moved.value).status == 200

    # The click UPDATEd the table: the row changed and the trigger logged it.
    assert await db.fetchval("SELECT status FROM orders WHERE id = 1") == "confirmed"
    await expect(card).to_have_attribute("data-status", "confirmed")
    await expect(card.locator('.step[data-status="confirmed"]')).to_have_class("step current")
    await expect(card.locator('.step[data-status="confirmed"] time')).not_to_have_text("")
    await expect(customer.locator(".toast").filter(has_text="Order confirmed")).to_be_visible()
    await expect(customer.locator("#badge")).to_have_text("1")
    # The kitchen's own board moved the ticket too (through its vendor room).
    await expect(ticket).to_have_attribute("data-status", "confirmed")

    await ticket.locator('[data-action="advance"]').click()
    await expect(card.locator('.step[data-status="preparing"]')).to_have_class("step current")
    await expect(card.locator('.step[data-status="confirmed"]')).to_have_class("step done")
    await expect(customer.locator("#badge")).to_have_text("2")

    # Alice asks support; Sam (a third page) answers; both see typing and read ticks.
    support = await open_as(browser, base, "sam")
    chat = customer.locator("#customer-chat")
    await expect(chat.locator(".pill")).to_have_attribute("data-state", "live")
    await expect(chat.locator(".chat-presence")).to_have_text("Support is online")
    await chat.locator("input").fill("Where is my <b>thali</b>?")
    await chat.locator("button[type=submit]").click()
    mine = chat.locator(".msg.mine").last
    await expect(mine.locator(".text")).to_have_text("Where is my <b>thali</b>?")
    await expect(mine.locator(".ticks")).to_have_attribute("data-tick", "sent")

    await expect(support.locator(".toast").filter(has_text="New chat")).to_be_visible()
    await support.locator("#conversation-list button").first.click()
    desk = support.locator("#support-chat")
    await expect(desk.locator(".msg.theirs .text")).to_have_text("Where is my <b>thali</b>?")
    assert await desk.locator(".msg b").count() == 0
    await expect(mine.locator(".ticks")).to_have_attribute("data-tick", "read")

    await desk.locator("input").press_sequentially("On its way", delay=20)
    await expect(chat.locator(".typing")).to_have_text("Support is typing…")
    await desk.locator("input").press("Enter")
    reply = chat.locator(".msg.theirs").last
    await expect(reply.locator(".text")).to_have_text("On its way")
    await expect(reply.locator(".sender")).to_have_text("Support")
    await expect(chat.locator(".typing")).to_have_text("")
    await expect(desk.locator(".msg.mine .ticks").last).to_have_attribute("data-tick", "read")

    await customer.screenshot(path=str(tmp_path / "customer.png"))
    await kitchen.screenshot(path=str(tmp_path / "kitchen.png"))
    await support.screenshot(path=str(tmp_path / "support.png"))
    assert (tmp_path / "customer.png").stat().st_size > 10_000

    # After a reload the page still knows what the other side has read.
    await customer.reload()
    await expect(chat.locator(".msg.mine .ticks").last).to_have_attribute("data-tick", "read")
    await expect(chat.locator(".msg.theirs .text").last).to_have_text("On its way")


async def test_text_from_the_backend_is_shown_as_text_never_as_html(
    browser: Browser, demo_server: TestServer, db: asyncpg.Connection
) -> None:
    base = base_url(demo_server)
    customer = await open_as(browser, base, "alice")
    hostile = '<img src=x onerror="window.__pwned=1">Deal'
    await db.execute(
        "SELECT tiffin_rt.notify_user('alice', 'promo', $1, $2)", hostile, "<b>50% off</b>"
    )
    toast = customer.locator(".toast").filter(has_text="Deal")
    await expect(toast).to_be_visible()
    await expect(toast.locator("strong")).to_have_text(hostile)
    await expect(toast.locator("span")).to_have_text("<b>50% off</b>")
    assert await customer.locator(".toast img, .toast b").count() == 0
    assert await customer.evaluate("window.__pwned === undefined")
    await customer.locator("#bell").click()
    await expect(customer.locator("#notification-list li strong")).to_have_text(hostile)
    await expect(customer.locator("#badge")).to_be_hidden()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_the_page_recovers_after_the_server_restarts(
    dsn: str,
    db: asyncpg.Connection,
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> None:
    settings = make_settings(dsn, demo={"enabled": True})
    port = free_port()
    # As `tiffin-rt serve` does (server.shutdown_timeout): connections get a few seconds to end.
    first = await aiohttp_server(
        create_app(settings), host="127.0.0.1", port=port, shutdown_timeout=3
    )
    base = base_url(first)
    async with chromium() as browser:
        customer = await open_as(browser, base, "alice")
        card = customer.locator('#customer-orders [data-order-id="1"]')
        await expect(card.locator(".stream-tag")).to_have_text("SSE live")

        await first.close()
        await expect(customer.locator("#conn-socket")).not_to_have_attribute("data-state", "live")
        # Committed while no server runs: the page must still learn of it.
        await db.execute("UPDATE orders SET status = 'confirmed' WHERE id = 1")
        await db.execute("SELECT tiffin_rt.notify_user('alice', 'promo', 'Back online', '')")

        await aiohttp_server(create_app(settings), host="127.0.0.1", port=port)
        await expect(customer.locator("#conn-socket")).to_have_attribute(
            "data-state", "live", timeout=20_000
        )
        await expect(card).to_have_attribute("data-status", "confirmed", timeout=20_000)
        await expect(card.locator('.step[data-status="confirmed"]')).to_have_class("step current")
        await expect(customer.locator(".toast").filter(has_text="Back online")).to_be_visible()
        await expect(customer.locator("#badge")).to_have_text("1")
        await expect(customer.locator("#conn-sse")).to_have_attribute("data-state", "live")
        await customer.context.close()


async def test_finished_orders_offer_no_next_step_on_the_kitchen_and_support_boards(
    browser: Browser, demo_server: TestServer, db: asyncpg.Connection
) -> None:
    base = base_url(demo_server)
    kitchen = await open_as(browser, base, "kitchen-spice-garden")
    support = await open_as(browser, base, "sam")
    # Order 2 cancelled with the kitchen's own button, order 1 walked to delivered.
    await kitchen.locator('#kitchen-board [data-order-id="2"] [data-action="cancel"]').click()
    for status in ("confirmed", "preparing", "ready", "delivered"):
        await db.execute("UPDATE orders SET status = $1 WHERE id = 1", status)
    for page, board in ((kitchen, "#kitchen-board"), (support, "#support-board")):
        cancelled = page.locator(f'{board} [data-order-id="2"]')
        delivered = page.locator(f'{board} [data-order-id="1"]')
        await expect(cancelled).to_have_attribute("data-status", "cancelled")
        await expect(delivered).to_have_attribute("data-status", "delivered")
        for ticket in (cancelled, delivered):
            await expect(ticket.locator("button")).to_have_count(0)
        await expect(page.locator(f"{board} button").filter(has_text="undefined")).to_have_count(0)
        # The orders still open keep both buttons.
        await expect(page.locator(f'{board} [data-order-id="4"] button')).to_have_count(2)


# Every pair of neighbouring timeline labels, as boxes with room between them (or not).
LABELS_APART = """() => {
  const crowded = [];
  for (const timeline of document.querySelectorAll(".timeline")) {
    const labels = [...timeline.querySelectorAll(".step-label")];
    const boxes = labels.map((l) => [l.textContent, l.getBoundingClientRect()]);
    for (let i = 1; i < boxes.length; i += 1) {
      const [a, ra] = boxes[i - 1];
      const [b, rb] = boxes[i];
      const apart = rb.left - ra.right >= 4 || ra.left - rb.right >= 4 || rb.top - ra.bottom >= 2;
      if (!apart) crowded.push(`${a}|${b}`);
    }
  }
  return crowded;
}"""


@pytest.mark.parametrize("width", [390, 700, 1360])
async def test_every_view_fits_the_screen_and_timeline_labels_stay_apart(
    browser: Browser, demo_server: TestServer, db: asyncpg.Connection, width: int
) -> None:
    base = base_url(demo_server)
    # A cancelled order shows six steps, the most a timeline has.
    await db.execute("UPDATE orders SET status = 'cancelled' WHERE id = 2")
    await db.execute("UPDATE orders SET status = 'preparing' WHERE id = 1")
    for user in ("alice", "kitchen-spice-garden", "sam"):
        page = await open_as(browser, base, user, width=width, height=844)
        await expect(page.locator('[data-order-id="1"]').first).to_have_attribute(
            "data-status", "preparing"
        )
        assert await page.evaluate("document.documentElement.scrollWidth") <= width, user
        if user == "alice":
            await expect(page.locator(".timeline")).to_have_count(2)
            assert await page.evaluate(LABELS_APART) == []
        await page.context.close()
    welcome = await (await browser.new_context(viewport={"width": width, "height": 844})).new_page()
    await welcome.goto(f"{base}/")
    await expect(welcome.locator("#persona-cards .persona")).to_have_count(5)
    assert await welcome.evaluate("document.documentElement.scrollWidth") <= width
    await welcome.context.close()


async def test_a_refused_page_shows_what_the_server_said_and_recovers(
    dsn: str, aiohttp_server: Callable[..., Awaitable[TestServer]]
) -> None:
    settings = make_settings(dsn, demo={"enabled": True}, limits={"connections_per_user": 2})
    server = await aiohttp_server(create_app(settings), host="127.0.0.1", shutdown_timeout=3)
    base = base_url(server)
    kitchen_token = token(settings, "kitchen-spice-garden", "kitchen", vendor_id="spice-garden")
    # Two other tabs of the same user hold both connections the user may have.
    tabs = [await sio_client(base, kitchen_token) for _ in range(2)]
    async with chromium() as browser:
        page = await (await browser.new_context()).new_page()
        page.set_default_timeout(TIMEOUT_MS)
        await page.goto(f"{base}/#as=kitchen-spice-garden")
        pill = page.locator("#conn-socket")
        notice = page.locator("#notice")
        # The HTTP 429 (loading the orders) and the Socket.IO refusal both say why.
        await expect(page.locator(".toast").filter(has_text="Cannot load orders")).to_contain_text(
            "too many open connections for this user; close another tab"
        )
        await expect(pill).to_have_attribute("data-state", "offline")
        await expect(pill.locator(".state")).to_have_text("refused")
        await expect(pill).to_have_attribute("title", "too many open connections for this user")
        await expect(notice).to_have_text(
            "Live updates refused: too many open connections for this user; close another tab"
        )
        # The other tabs close: the page tries again by itself and shows the board.
        for client, _ in tabs:
            await client.disconnect()
        await expect(pill).to_have_attribute("data-state", "live", timeout=20_000)
        await expect(page.locator('#kitchen-board [data-order-id="1"]')).to_have_count(1)
        await expect(notice).to_be_hidden()
        await page.context.close()
