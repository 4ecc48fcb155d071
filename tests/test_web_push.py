"""Web Push on the page, in a real headless Chromium: the service worker is registered and a push
it receives is shown (as a system notification, and on an open page like a live notification)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, BrowserContext, Page, expect

from tests.helpers import base_url, eventually, make_settings, token
from tests.push_service import b64url_decode, push_service
from tests.test_web_page import TIMEOUT_MS, chromium
from tiffin_rt.app import create_app
from tiffin_rt.keys import SETTINGS
from tiffin_rt.push.keys import PUSH
from tiffin_rt.push.vapid import KeyPair, generate_keys


@pytest.fixture
def vapid() -> KeyPair:
    return generate_keys()


@pytest.fixture
async def push_server(
    dsn: str, vapid: KeyPair, aiohttp_server: Callable[..., Awaitable[TestServer]]
) -> TestServer:
    push = {
        "enabled": True,
        "vapid_private_key": vapid.private_key,
        "vapid_subject": "mailto:ops@tiffin.test",
        "http_hosts": ["127.0.0.1"],
        "claim_delay": 0,
    }
    app = create_app(make_settings(dsn, demo={"enabled": True}, push=push))
    return await aiohttp_server(app, host="127.0.0.1", shutdown_timeout=3)


@pytest.fixture
async def browser(push_server: TestServer) -> AsyncIterator[Browser]:
    async with chromium() as browser:
        yield browser


async def open_page(
    browser: Browser, base: str, user: str, context: BrowserContext | None = None
) -> tuple[BrowserContext, Page]:
    context = context or await browser.new_context(viewport={"width": 1360, "height": 860})
    await context.grant_permissions(["notifications"], origin=base)
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{base}/#as={user}")
    await expect(page.locator("#conn-socket")).to_have_attribute("data-state", "live")
    await expect(page.locator("body")).to_have_attribute("data-service-worker", "registered")
    assert errors == []
    return context, page


async def shown_by_worker(page: Page, count: int) -> list[list[str]]:
    """The system notifications the service worker is showing, once there are `count`."""
    handle = await page.wait_for_function(
        """async (count) => {
            const registration = await navigator.serviceWorker.getRegistration("/static/");
            const list = await registration.getNotifications();
            return list.length >= count && list.map((n) => [n.title, n.body, n.tag]);
        }""",
        arg=count,
        polling=100,
    )
    shown: list[list[str]] = await handle.json_value()
    return shown


async def registration_id(context: BrowserContext, page: Page, base: str) -> Any:
    """The service worker registration's id, as the DevTools protocol names it."""
    cdp = await context.new_cdp_session(page)
    found: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def updated(params: dict[str, Any]) -> None:
        for registration in params.get("registrations", []):
            if registration["scopeURL"].startswith(base) and not found.done():
                found.set_result(registration["registrationId"])

    cdp.on("ServiceWorker.workerRegistrationUpdated", updated)
    await cdp.send("ServiceWorker.enable")
    return cdp, await asyncio.wait_for(found, 10)


async def test_a_pushed_notification_is_shown_by_the_service_worker_and_the_page(
    browser: Browser, push_server: TestServer
) -> None:
    base = base_url(push_server)
    context, page = await open_page(browser, base, "alice")
    toggle = page.locator("#push-toggle")
    await expect(toggle).to_be_visible()
    await expect(toggle).to_have_attribute("data-state", "idle")
    # The worker's scope is /static/ (push needs no control of the page): ask for it there.
    assert await page.evaluate(
        "navigator.serviceWorker.getRegistration('/static/').then((r) => !!(r && r.active))"
    )

    cdp, rid = await registration_id(context, page, base)
    note = {
        "id": 4242,
        "type": "promo",
        "title": "<img src=x onerror=alert(1)> Free delivery",
        "body": "Pushed while you were away",
        "data": {},
        "createdAt": "2026-12-01T10:00:00.000Z",
        "eventId": 4242,
    }
    await cdp.send(
        "ServiceWorker.deliverPushMessage",
        {"origin": base, "registrationId": rid, "data": json.dumps(note)},
    )
    toast = page.locator(".toast").filter(has_text="Free delivery")
    await expect(toast).to_be_visible()
    await expect(toast).to_contain_text("<img src=x onerror=alert(1)> Free delivery")
    await expect(page.locator("#toasts img")).to_have_count(0)
    await expect(page.locator("#badge")).to_have_text("1")
    await expect(page.locator('#notification-list [data-notification-id="4242"]')).to_have_count(1)
    assert await shown_by_worker(page, 1) == [[note["title"], note["body"], "tiffin-4242"]]
    await context.close()


# Headless Chromium has no push service (its PushManager.subscribe() answers "Registration
# failed - permission denied"), so this test stands in for the browser's half only: subscribe()
# returns a subscription to the tests' push service (a key pair of the test's), and the push
# that service decrypts is handed to the service worker as the browser would hand it over.
FAKE_SUBSCRIBE = """
(() => {
  const json = SUBSCRIPTION;
  const subscription = {
    endpoint: json.endpoint,
    toJSON: () => json,
    unsubscribe: async () => { localStorage.removeItem("subscribed"); return true; },
  };
  PushManager.prototype.getSubscription = async function () {
    return localStorage.getItem("subscribed") ? subscription : null;
  };
  PushManager.prototype.subscribe = async function (options) {
    window.subscribedWith = {
      userVisibleOnly: options.userVisibleOnly,
      key: Array.from(new Uint8Array(options.applicationServerKey)),
    };
    localStorage.setItem("subscribed", "1");
    return subscription;
  };
})();
"""


async def test_the_page_subscribes_and_a_push_sent_while_away_is_shown(
    browser: Browser, push_server: TestServer, vapid: KeyPair, db: asyncpg.Connection
) -> None:
    base = base_url(push_server)
    async with push_service(vapid.public_key) as pushes:
        device = pushes.new_device()
        context = await browser.new_context(viewport={"width": 1360, "height": 860})
        await context.add_init_script(
            FAKE_SUBSCRIBE.replace("SUBSCRIPTION", json.dumps(pushes.subscription(device)))
        )
        context, page = await open_page(browser, base, "alice", context)
        toggle = page.locator("#push-toggle")
        await toggle.click()
        await expect(toggle).to_have_attribute("data-state", "live")
        await expect(
            page.locator(".toast").filter(has_text="Push notifications on")
        ).to_be_visible()
        used = await page.evaluate("window.subscribedWith")
        assert used["userVisibleOnly"] is True
        assert bytes(used["key"]) == b64url_decode(vapid.public_key)
        assert await subscribed(push_server, "alice") == [pushes.subscription(device)["endpoint"]]

        await page.close()  # alice leaves: nothing of hers is open
        dispatcher = push_server.app[PUSH].dispatcher
        assert dispatcher is not None
        await eventually(lambda: not dispatcher.is_online("alice"))
        await db.execute(
            "SELECT tiffin_rt.notify_user('alice', 'promo', 'Lunch is ready', 'Come and get it')"
        )
        (push,) = await pushes.wait_for(device)
        assert push.payload["title"] == "Lunch is ready"

        blank = await context.new_page()  # the welcome screen: no user, no socket
        blank.set_default_timeout(TIMEOUT_MS)
        await blank.goto(base)
        cdp, rid = await registration_id(context, blank, base)
        await cdp.send(
            "ServiceWorker.deliverPushMessage",
            {"origin": base, "registrationId": rid, "data": json.dumps(push.payload)},
        )
        assert await shown_by_worker(blank, 1) == [
            ["Lunch is ready", "Come and get it", "tiffin-" + str(push.payload["id"])]
        ]

        # Back on the page, push shows as on; turning it off removes this browser from the server.
        page = (await open_page(browser, base, "alice", context))[1]
        toggle = page.locator("#push-toggle")
        await expect(toggle).to_have_attribute("data-state", "live")
        await toggle.click()
        await expect(toggle).to_have_attribute("data-state", "idle")
        assert await subscribed(push_server, "alice") == []
        await context.close()


async def subscribed(server: TestServer, user: str) -> list[str]:
    headers = {"Authorization": f"Bearer {token(server.app[SETTINGS], user)}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(base_url(server) + "/api/push/subscriptions", headers=headers) as resp,
    ):
        return [s["endpoint"] for s in (await resp.json())["subscriptions"]]


async def test_a_browser_without_a_push_service_says_so(
    browser: Browser, push_server: TestServer
) -> None:
    context, page = await open_page(browser, base_url(push_server), "alice")
    await page.locator("#push-toggle").click()
    await expect(page.locator("#push-toggle")).to_have_attribute("data-state", "offline")
    toast = page.locator(".toast").filter(has_text="Push notifications unavailable")
    await expect(toast).to_contain_text("Registration failed")
    await context.close()
