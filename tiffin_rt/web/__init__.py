"""The page at `/`: static files from the package, and the demo endpoints when enabled."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from tiffin_rt.config import Settings

STATIC_DIR = Path(__file__).parent / "static"
VENDOR_SCRIPT = STATIC_DIR / "vendor" / "socket.io.min.js"


async def index(_request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


def setup_web(app: web.Application, settings: Settings) -> None:
    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC_DIR, append_version=False)
    if settings.demo.enabled:
        from tiffin_rt.web.demo import setup_demo

        setup_demo(app)
