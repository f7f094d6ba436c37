"""The console's web server (aiohttp): the page, its static files and one WebSocket per page.

Every request needs the access token (``?token=`` once, then a cookie, as Jupyter does); the
WebSocket too. The page gets a frame only after it said it showed the previous one, so the
image rate follows what the link carries instead of queueing behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import ssl
from pathlib import Path

from aiohttp import WSMsgType, web

from rover.console.hub import ConsoleHub

log = logging.getLogger("rover.console")
STATIC = Path(__file__).with_name("static")
COOKIE = "rover_token"
HUD_PERIOD_S = 0.1
ACK_TIMEOUT_S = 1.0
HUB_KEY = web.AppKey("hub", ConsoleHub)
TOKEN_KEY = web.AppKey("token", str)
REFUSED = (
    "rover console: this needs the access token. Open the URL that `rover teleop/drive "
    "--console` printed (console: https://...?token=...)."
)


def _token_ok(request: web.Request) -> bool:
    token = request.app[TOKEN_KEY]
    given = request.query.get("token") or request.cookies.get(COOKIE) or ""
    return hmac.compare_digest(given.encode(), token.encode())


@web.middleware
async def _require_token(request: web.Request, handler):
    if not _token_ok(request):
        return web.Response(status=403, text=REFUSED)
    response = await handler(request)
    if request.query.get("token") and not response.prepared:
        response.set_cookie(COOKIE, request.app[TOKEN_KEY], httponly=True, samesite="Strict")
    return response


async def _index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


async def _send_frames(ws: web.WebSocketResponse, hub: ConsoleHub, acked: asyncio.Event) -> None:
    sent = -1
    while not ws.closed:
        preview = await hub.wait_frame(sent, timeout_s=1.0)
        if preview is None:
            continue
        acked.clear()
        await ws.send_bytes(hub.frame_bytes(preview))
        sent = preview.frame_seq
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(acked.wait(), ACK_TIMEOUT_S)


async def _send_hud(ws: web.WebSocketResponse, hub: ConsoleHub, sid: str) -> None:
    while not ws.closed:
        await ws.send_str(json.dumps(hub.hud(sid)))
        await asyncio.sleep(HUD_PERIOD_S)  # the HUD's refresh period


def _same_origin(request: web.Request) -> bool:
    """A page of another site may not open this WebSocket with the visitor's cookie."""
    origin = request.headers.get("Origin")
    return origin is None or origin.split("://", 1)[-1] == request.host


async def _socket(request: web.Request) -> web.StreamResponse:
    if not _same_origin(request):
        return web.Response(status=403, text="rover console: foreign origin")
    hub = request.app[HUB_KEY]
    ws = web.WebSocketResponse(heartbeat=2.0, max_msg_size=1 << 16)
    await ws.prepare(request)
    sid = hub.join()
    log.info("%s connected from %s as %s", sid, request.remote, hub.gate.role(sid))
    acked = asyncio.Event()
    tasks = [
        asyncio.create_task(_send_frames(ws, hub, acked)),
        asyncio.create_task(_send_hud(ws, hub, sid)),
    ]
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                data = json.loads(msg.data)
                hub.on_input(sid, data)
            except (ValueError, KeyError, TypeError):
                continue  # a malformed message is dropped, never fatal
            if data.get("type") == "shown":
                acked.set()
            elif data.get("type") == "ping":  # the page's own clock both ways: a true RTT
                await ws.send_str(json.dumps({"type": "pong", "wall_ms": data.get("wall_ms")}))
    finally:
        for task in tasks:
            task.cancel()
        hub.leave(sid)
        log.info("%s left", sid)
    return ws


def make_app(hub: ConsoleHub, token: str) -> web.Application:
    """The console application: `/`, `/static/...`, `/ws`; all behind the token."""
    app = web.Application(middlewares=[_require_token])
    app[HUB_KEY] = hub
    app[TOKEN_KEY] = token
    app.router.add_get("/", _index)
    app.router.add_get("/ws", _socket)
    app.router.add_static("/static/", STATIC)
    return app


async def start_console(
    hub: ConsoleHub, host: str, port: int, token: str, tls: tuple[Path, Path] | None
) -> tuple[web.AppRunner, str]:
    """Serve the console; returns the runner and the URL (with the token) to print."""
    runner = web.AppRunner(make_app(hub, token), access_log=None)
    await runner.setup()
    context = None
    if tls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(tls[0]), str(tls[1]))
    site = web.TCPSite(runner, host, port, ssl_context=context)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # the real port when 0 was asked
    shown_host = host if host not in ("0.0.0.0", "::") else _this_host()
    scheme = "https" if tls else "http"
    return runner, f"{scheme}://{_url_host(shown_host)}:{bound}/?token={token}"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _this_host() -> str:
    import socket

    return socket.gethostname()
