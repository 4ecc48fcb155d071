"""REST for Web Push: the VAPID public key, and a device's subscription stored or removed."""

from __future__ import annotations

from aiohttp import web

from tiffin_rt.core.errors import ClientError
from tiffin_rt.core.events import iso_utc
from tiffin_rt.core.push import check_endpoint, parse_json_object, parse_subscription
from tiffin_rt.db import push
from tiffin_rt.keys import POOL, SETTINGS, request_identity
from tiffin_rt.push.keys import PUSH
from tiffin_rt.transports.http_auth import answers_refusals

KEY_ROUTE = "/api/push/vapid-public-key"
SUBSCRIPTIONS_ROUTE = "/api/push/subscriptions"
MAX_USER_AGENT = 200
_UNAVAILABLE = "push subscriptions are unavailable; try again"


def _enabled(request: web.Request) -> frozenset[str]:
    """push.http_hosts, once push is known to be on (404 otherwise)."""
    if PUSH not in request.app:
        raise ClientError("not_found", "Web Push is not enabled on this server (push.enabled)")
    return frozenset(h.lower() for h in request.app[SETTINGS].push.http_hosts)


async def public_key(request: web.Request) -> web.Response:
    """The applicationServerKey for PushManager.subscribe()."""
    _enabled(request)
    return web.json_response({"publicKey": request.app[PUSH].public_key})


async def subscribe(request: web.Request) -> web.Response:
    """Body: the browser's PushSubscription.toJSON(). 201 when new, 200 when refreshed;
    `forgotten`: the user's oldest devices dropped to keep push.max_subscriptions_per_user."""
    http_hosts = _enabled(request)
    who = request_identity(request)
    sub = parse_subscription(parse_json_object(await request.read()), http_hosts)
    agent = request.headers.get("User-Agent", "")[:MAX_USER_AGENT] or None
    stored, created, forgotten = await push.save(
        request.app[POOL],
        who.user_id,
        sub,
        user_agent=agent,
        keep=request.app[SETTINGS].push.max_subscriptions_per_user,
    )
    return web.json_response(
        {
            "id": stored.id,
            "endpoint": stored.subscription.endpoint,
            "created": created,
            "forgotten": forgotten,
        },
        status=201 if created else 200,
    )


async def unsubscribe(request: web.Request) -> web.Response:
    """Body: {"endpoint"} (or the whole PushSubscription JSON); only your own device."""
    http_hosts = _enabled(request)
    who = request_identity(request)
    body = parse_json_object(await request.read())
    endpoint = check_endpoint(body.get("endpoint"), http_hosts, any_port=True)
    deleted = await push.delete(request.app[POOL], who.user_id, endpoint)
    return web.json_response({"deleted": deleted})


async def list_subscriptions(request: web.Request) -> web.Response:
    _enabled(request)
    who = request_identity(request)
    devices = await push.for_user(request.app[POOL], who.user_id)
    return web.json_response(
        {
            "subscriptions": [
                {
                    "id": d.id,
                    "endpoint": d.subscription.endpoint,
                    "userAgent": d.user_agent,
                    "createdAt": iso_utc(d.created_at),
                }
                for d in devices
            ]
        }
    )


def setup_push_http(app: web.Application) -> None:
    answers = answers_refusals(unavailable=_UNAVAILABLE)
    app.router.add_get(KEY_ROUTE, answers(public_key))
    app.router.add_get(SUBSCRIPTIONS_ROUTE, answers(list_subscriptions))
    app.router.add_post(SUBSCRIPTIONS_ROUTE, answers(subscribe))
    app.router.add_delete(SUBSCRIPTIONS_ROUTE, answers(unsubscribe))
