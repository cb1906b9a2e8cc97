"""A loopback aiohttp server whose one endpoint runs a swappable handler.

Shared by the provider tests to script exact wire cases (odd bodies, held-open
streams, disconnects) that the simulator's mock server does not produce.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ScriptedServer:
    """Serves ``POST path`` with the current ``handler``; records what it saw."""

    def __init__(self, path: str, handler: Handler, *, url_path: str = "") -> None:
        self.handler = handler
        self.seen: list[tuple[dict[str, Any], dict[str, str]]] = []
        self.disconnects = 0
        #: Client ports seen, one per TCP connection used.
        self.peers: set[int] = set()
        self._url_path = url_path
        app = web.Application()
        app.router.add_post(path, self._dispatch)
        self.server = TestServer(app)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((await request.json(), dict(request.headers)))
        assert request.transport is not None
        self.peers.add(request.transport.get_extra_info("peername")[1])
        try:
            return await self.handler(request)
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnects += 1
            raise

    @property
    def url(self) -> str:
        return str(self.server.make_url(self._url_path))


def sse_handler(
    parts: tuple[bytes, ...], *, headers: dict[str, str], pause: float = 0.0, close: bool = False
) -> Handler:
    """Send ``parts`` as an SSE body (``close``: drop the connection instead of ending it)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", **headers})
        await resp.prepare(request)
        for part in parts:
            await resp.write(part)
            await asyncio.sleep(pause)
        if close:
            assert request.transport is not None
            request.transport.close()
            return resp
        await resp.write_eof()
        return resp

    return handler


def error(status: int, body: Any, headers: dict[str, str] | None = None) -> Handler:
    """Answer with ``status`` and a JSON (or raw string) body."""

    async def handler(request: web.Request) -> web.StreamResponse:
        text = body if isinstance(body, str) else json.dumps(body)
        return web.Response(
            status=status, text=text, headers=headers, content_type="application/json"
        )

    return handler
