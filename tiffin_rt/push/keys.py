"""App state of Web Push (set only when push.enabled)."""

from __future__ import annotations

from aiohttp import web

from tiffin_rt.push.service import PushService

PUSH = web.AppKey("push", PushService)
