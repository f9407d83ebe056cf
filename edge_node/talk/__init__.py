"""``/talk``: a static page on the edge's HTTP port that talks to this node from a browser (docs/talk.md).

The page is plain files in ``static/`` (HTML, ES modules, an AudioWorklet, CSS; no build step, nothing
fetched from elsewhere). It speaks the device protocol itself: WebCodecs encodes the microphone as
16 kHz Opus and decodes the reply, so the node sees one more device.

Every answer carries a strict Content-Security-Policy: scripts, styles and the worklet only from this
origin, no inline code, and ``connect-src`` limited to this node's own WebSocket URL, computed from the
request's Host header the way the OTA answer computes ``websocket.url`` (wss:// when TLS is on).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

__all__ = ["STATIC", "TalkPage", "csp_for"]

_SAFE = re.compile(r"[A-Za-z0-9.:\-\[\]_/]+")
STATIC = Path(__file__).parent / "static"
# Only these files are served (no directory listing, no path from the request reaches the file system).
FILES = {
    "talk.js": "text/javascript",
    "opus-audio.js": "text/javascript",
    "device-tools.js": "text/javascript",
    "capture-worklet.js": "text/javascript",
    "talk.css": "text/css",
}


def csp_for(ws_url: str) -> str:
    """The page's policy: its own origin for code and styles, and only the node's WebSocket to connect to."""
    parts = urlsplit(ws_url)
    if not _SAFE.fullmatch(parts.netloc + parts.path) or parts.scheme not in ("ws", "wss"):
        connect = "'none'"  # a Host header that is not a host name must not write the policy
    else:
        # Scheme, host, port and path; the query string (device id, token) is not part of the match.
        connect = f"{parts.scheme}://{parts.netloc}{parts.path or '/'}"
    return (
        "default-src 'none'; script-src 'self'; worker-src 'self'; style-src 'self'; img-src 'self'; "
        f"connect-src {connect}; media-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


class TalkPage:
    """The routes of the page. ``ws_url(host_header)`` is the node's public WebSocket URL for a request;
    ``needs_token()`` says whether a handshake without a token is refused (``auth.enabled`` or
    ``auth.device_tokens``)."""

    def __init__(self, ws_url: Callable[[str | None], str], needs_token: Callable[[], bool]) -> None:
        self.ws_url = ws_url
        self.needs_token = needs_token
        # Read once when the node starts (a few kB): no file I/O on the event loop per request.
        self._index = (STATIC / "index.html").read_text(encoding="utf-8")
        self._assets = {name: (STATIC / name).read_bytes() for name in FILES}

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/talk", self.page),
            web.get("/talk/", self.page),
            web.get("/talk/favicon.ico", self.favicon),
            web.get("/favicon.ico", self.favicon),
            web.get("/talk/{name}", self.asset),
        ]

    def _headers(self, request: web.Request, content_type: str) -> dict[str, str]:
        return {
            "Content-Type": content_type,
            "Content-Security-Policy": csp_for(self.ws_url(request.host)),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        }

    async def page(self, request: web.Request) -> web.Response:
        # What the page needs to know of the node travels as data attributes of <body>: no inline
        # script, and no fetch that connect-src would have to allow.
        text = self._index.replace("{{ws_url}}", html.escape(self.ws_url(request.host), quote=True))
        text = text.replace("{{needs_token}}", "1" if self.needs_token() else "0")
        return web.Response(text=text, headers=self._headers(request, "text/html; charset=utf-8"))

    async def favicon(self, request: web.Request) -> web.Response:
        return web.Response(status=204)  # no icon, and no 404 in the browser's console

    async def asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        kind = FILES.get(name)
        if kind is None:
            raise web.HTTPNotFound()
        return web.Response(body=self._assets[name], headers=self._headers(request, f"{kind}; charset=utf-8"))
