"""A loopback aiohttp server whose one endpoint runs a swappable handler.

Shared by the provider tests to script exact wire cases (odd bodies, held-open
streams, disconnects) that the simulator's mock server does not produce.
"""

from __future__ import annotations

import asyncio
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
