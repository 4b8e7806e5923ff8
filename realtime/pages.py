"""The hub's web pages: customer tracking (/track), operator console (/console), technician app
(/tech), the index at / that points to them, and their static files (/static, Leaflet vendored
under /static/vendor/leaflet).

The pages are plain HTML + ES modules + CSS in ``realtime/web/``: no framework, no bundler, no
CDN, so ``pip install`` alone serves them. Each page reads its token (and the booking, for
/track) from its own URL, e.g. ``/track?booking=b-1&token=...``; the hub injects only what
the settings decide (the tile server) as a JSON ``data-config`` attribute on ``<body>``.
"""

from __future__ import annotations

import functools
import html
import json
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from realtime.protocol import PROTOCOL_VERSION

WEB_DIR = Path(__file__).parent / "web"
STATIC_DIR = WEB_DIR / "static"
PAGES = ("track", "console", "tech", "dashboard")
INDEX_PAGE = "index"  # served at "/": what this hub is, links to the pages, health and docs
CONFIG_PLACEHOLDER = "{{config}}"
PROTOCOL_PLACEHOLDER = "{{protocol}}"

# The pages carry a token in their URL. ``strict-origin`` keeps it out of the Referer sent to
# the tile server; ``no-store`` keeps the page (and so the token) out of shared caches. The
# CSP allows scripts and styles from the hub only; images may come from any tile server.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "strict-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        "img-src 'self' data: blob: http: https:; connect-src 'self' ws: wss:; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
}


@functools.cache
def _template(name: str) -> str:
    return (WEB_DIR / "pages" / f"{name}.html").read_text(encoding="utf-8")


def page_config(settings: Any) -> dict[str, Any]:
    """What a page needs from the hub's settings (nothing secret: every visitor sees it)."""
    return {
        "protocol": PROTOCOL_VERSION,
        "tile_url": settings.tile_url,
        "tile_attribution": settings.tile_attribution,
    }


def render(name: str, settings: Any) -> str:
    """The page ``name`` with its config JSON escaped into an HTML attribute (and the
    protocol version, escaped too, where the page shows it)."""
    config = page_config(settings)
    return (
        _template(name)
        .replace(CONFIG_PLACEHOLDER, html.escape(json.dumps(config), quote=True))
        .replace(PROTOCOL_PLACEHOLDER, html.escape(str(config["protocol"]), quote=True))
    )


def _page(name: str) -> Any:
    async def endpoint(request: Request) -> Response:
        return HTMLResponse(render(name, request.app.state.settings), headers=SECURITY_HEADERS)

    endpoint.__name__ = f"{name}_page"
    return endpoint


routes: list[BaseRoute] = [
    Route("/", _page(INDEX_PAGE), methods=["GET", "HEAD"]),
    *(Route(f"/{name}", _page(name), methods=["GET", "HEAD"]) for name in PAGES),
    Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
]
