"""Demo-only HTTP endpoints behind the page: mint a token, list, place and move orders.

Registered only while `demo.enabled` is true. Every endpoint but the token ones needs the
token it minted, and answers only what that identity may see or do.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, cast

import asyncpg
from aiohttp import web

from tiffin_rt.auth import Identity, mint_token
from tiffin_rt.core.errors import ClientError
from tiffin_rt.core.policy import is_staff, may_join
from tiffin_rt.core.rooms import Room
from tiffin_rt.db.demo_orders import DemoOrders, OrderFilter
from tiffin_rt.demo import ALL_STATUSES, VENDOR_NAMES, TransitionError, move_order
from tiffin_rt.keys import ORDER_QUERIES, POOL, SETTINGS, request_identity
from tiffin_rt.transports.http_auth import answers_refusals

PREFIX = "/api/demo"
# Public (no token): listed in transports.http_auth.PUBLIC_PATHS.
USERS_PATH = f"{PREFIX}/users"
TOKEN_PATH = f"{PREFIX}/token"

MAX_ITEM_LENGTH = 80


@dataclass(frozen=True, slots=True)
class DemoUser:
    user_id: str
    role: str
    name: str
    vendor_id: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.user_id,
            "role": self.role,
            "name": self.name,
            "vendorId": self.vendor_id,
        }


# The people in the demo orders table (db.triggers.demo_table_sql), plus a support agent.
DEMO_USERS = (
    DemoUser("alice", "customer", "Alice"),
    DemoUser("bob", "customer", "Bob"),
    DemoUser("kitchen-spice-garden", "kitchen", "Spice Garden kitchen", "spice-garden"),
    DemoUser("kitchen-green-bowl", "kitchen", "Green Bowl kitchen", "green-bowl"),
    DemoUser("sam", "support", "Sam from support"),
)
_USERS = {u.user_id: u for u in DEMO_USERS}



DEMO_QUERIES = web.AppKey("demo_queries", DemoOrders)


async def _demo_queries(app: web.Application) -> AsyncIterator[None]:
    """Built on the pool: register after the pool's cleanup context."""
    app[DEMO_QUERIES] = await DemoOrders.create(app[POOL], app[SETTINGS].orders)
    yield


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ClientError("invalid_json", "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ClientError("invalid_json", "the body must be a JSON object")
    return body


async def list_users(_request: web.Request) -> web.Response:
    return web.json_response({"users": [u.as_json() for u in DEMO_USERS]})


async def issue_token(request: web.Request) -> web.Response:
    body = await _json_body(request)
    user = _USERS.get(str(body.get("user", "")))
    if user is None:
        raise ClientError("unknown_user", f"pick one of: {', '.join(_USERS)}")
    ttl = request.app[SETTINGS].demo.token_ttl
    token = mint_token(
        request.app[SETTINGS].auth,
        sub=user.user_id,
        role=user.role,
        vendor_id=user.vendor_id,
        ttl=ttl,
    )
    return web.json_response({"token": token, "expiresIn": ttl, "user": user.as_json()})


def _filter_for(who: Identity, demo: DemoOrders) -> OrderFilter:
    if is_staff(who.role):
        return OrderFilter()
    column = demo.column_for(who.role)
    value = who.vendor_id if who.role == "kitchen" else who.user_id
    return OrderFilter(column=column, value=value)


async def list_orders(request: web.Request) -> web.Response:
    who = request_identity(request)
    demo = request.app[DEMO_QUERIES]
    orders = await demo.visible(request.app[POOL], _filter_for(who, demo))
    return web.json_response({"orders": [o.as_json() for o in orders]})


async def change_status(request: web.Request) -> web.Response:
    """UPDATE the orders table (the trigger logs it) and notify the customer, in one transaction."""
    who = request_identity(request)
    order_id = request.match_info["id"]
    body = await _json_body(request)
    target = body.get("status")
    if not isinstance(target, str) or target not in ALL_STATUSES:
        raise ClientError("invalid_status", f"status must be one of {', '.join(ALL_STATUSES)}")
    if who.role != "kitchen" and not is_staff(who.role):
        raise ClientError("forbidden", "only kitchen staff and support move orders")
    app = request.app
    demo = app[DEMO_QUERIES]
    async with app[POOL].acquire() as proxy, proxy.transaction():
        conn = cast(asyncpg.Connection, proxy)  # a pooled connection, typed as its proxy
        snapshot = await app[ORDER_QUERIES].fetch(conn, order_id)
        if snapshot is None or not may_join(who, Room("order", order_id), snapshot.parties):
            raise ClientError("forbidden", f"you may not move order {order_id}")
        item = await demo.item_of(conn, order_id)
        try:
            await move_order(conn, app[ORDER_QUERIES], snapshot, target, item)
        except TransitionError as exc:
            raise ClientError("invalid_transition", str(exc)) from None
        view = await demo.get(conn, order_id)
    return web.json_response({"ok": True, "order": view.as_json() if view else None})


async def place_order(request: web.Request) -> web.Response:
    """A customer places an order for themselves; support may place one for a customer."""
    who = request_identity(request)
    body = await _json_body(request)
    if who.role == "customer":
        customer = who.user_id
    elif is_staff(who.role):
        customer = str(body.get("customerId") or "")
        if not customer:
            raise ClientError("invalid_order", "customerId is required")
    else:
        raise ClientError("forbidden", "only customers and support place orders")
    vendor = body.get("vendorId")
    item = body.get("item")
    cents = body.get("totalCents", 0)
    if vendor not in VENDOR_NAMES:
        raise ClientError("invalid_order", "vendorId must be spice-garden or green-bowl")
    if not isinstance(item, str) or not item.strip() or len(item) > MAX_ITEM_LENGTH:
        raise ClientError("invalid_order", f"item: 1 to {MAX_ITEM_LENGTH} characters")
    if not isinstance(cents, int) or not 0 <= cents <= 1_000_000:
        raise ClientError("invalid_order", "totalCents must be a whole number of cents")
    demo = request.app[DEMO_QUERIES]
    async with request.app[POOL].acquire() as conn:
        order_id = await demo.place(
            conn, customer_id=customer, vendor_id=str(vendor), item=item.strip(), cents=cents
        )
        view = await demo.get(conn, order_id)
    return web.json_response({"ok": True, "order": view.as_json() if view else None}, status=201)


def setup_demo(app: web.Application) -> None:
    """Add the demo endpoints; call only when demo.enabled is true."""
    answers = answers_refusals(unavailable="the database is not reachable right now")
    app.router.add_get(USERS_PATH, list_users)
    app.router.add_post(TOKEN_PATH, answers(issue_token))
    app.router.add_get(f"{PREFIX}/orders", answers(list_orders))
    app.router.add_post(f"{PREFIX}/orders", answers(place_order))
    app.router.add_post(f"{PREFIX}/orders/{{id}}/status", answers(change_status))
    app.cleanup_ctx.append(_demo_queries)
