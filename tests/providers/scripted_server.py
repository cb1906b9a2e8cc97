"""A loopback aiohttp server whose one endpoint runs a swappable handler.

Shared by the provider tests to script exact wire cases (odd bodies, held-open
streams, disconnects) that the simulator's mock server does not produce.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ScriptedServer:
    """Serves ``POST path`` (or each of several) with the current ``handler``; records what
    it saw."""

    def __init__(
        self, path: str | tuple[str, ...], handler: Handler, *, url_path: str = ""
    ) -> None:
        self.handler = handler
        self.seen: list[tuple[dict[str, Any], dict[str, str]]] = []
        #: Request bodies exactly as received, for golden comparisons.
        self.raw_bodies: list[bytes] = []
        self.disconnects = 0
        #: Client ports seen, one per TCP connection used.
        self.peers: set[int] = set()
        self._url_path = url_path
        app = web.Application()
        for one in (path,) if isinstance(path, str) else path:
            app.router.add_post(one, self._dispatch)
        self.server = TestServer(app)

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> None:
        """Listen on loopback (over TLS with ``ssl_context``)."""
        await self.server.start_server(ssl=ssl_context)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.raw_bodies.append(raw)
        self.seen.append((json.loads(raw), dict(request.headers)))
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


# ----------------------------------------------------------------- raw servers and helpers

RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """``asyncio.start_server`` on loopback for byte-exact answers; ``async with`` it."""

    def __init__(self, handler: RawHandler) -> None:
        self.handler = handler
        self.connections = 0
        self.sent = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._run, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _run(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # Stopped by __aexit__; asyncio would log a cancelled handler task as an error.
            pass
        finally:
            self._tasks.discard(task)  # type: ignore[arg-type]
            writer.close()

    async def send_until_closed(
        self, writer: asyncio.StreamWriter, piece: bytes, *, cap: int = 256 << 20
    ) -> None:
        """Write ``piece`` again and again (waiting for the socket each time) until the
        client goes away or ``cap`` bytes are sent."""
        while self.sent < cap:
            writer.write(piece)
            self.sent += len(piece)
            await writer.drain()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One HTTP request's head and body (``Content-Length`` framed)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + await reader.readexactly(length)


# ----------------------------------------------------------------- one test, every provider path

#: Every HTTP path a request can take: the OpenAI provider on each transport, and Anthropic.
KINDS = ("openai-lean", "openai-aiohttp", "anthropic")
#: A key whose escaped forms (JSON, URL) differ from it, to catch echoes in any form.
ECHO_KEY = "sk-gw/AbCdEf+GhIjKl=MnOpQr9q8w7e6r"


def api_path(kind: str) -> str:
    """The path each kind posts to under a base URL of ``http://host:port``."""
    return "/v1/messages" if kind == "anthropic" else "/v1/chat/completions"


def base_url(kind: str, origin: str) -> str:
    """The base URL to give a ``kind`` provider for a server at ``origin``."""
    return origin if kind == "anthropic" else f"{origin}/v1"


def model_spec(kind: str, origin: str, *, api_key: str | None = ECHO_KEY, **kw: Any) -> Any:
    """A :class:`ModelSpec` of ``kind`` for a server at ``origin`` (``http(s)://host:port``)."""
    from agentic_synth._spec import ModelSpec

    options = dict(kw.pop("options", {}))
    if kind == "anthropic":
        return ModelSpec(
            "anthropic", "claude-x", base_url=origin, api_key=api_key, options=options, **kw
        )
    transport = kind.partition("-")[2]
    if transport != "auto":  # "openai-auto": the provider picks (aiohttp when proxied)
        options.setdefault("transport", transport)
    return ModelSpec(
        "openai", "gpt-x", base_url=f"{origin}/v1", api_key=api_key, options=options, **kw
    )


def build(kind: str, origin: str, *, max_connections: int = 4, **kw: Any) -> Any:
    """The provider for :func:`model_spec`."""
    from agentic_synth.providers import create_provider

    return create_provider(model_spec(kind, origin, **kw), max_connections=max_connections)


async def call(provider: Any, *, streamed: bool, **request: Any) -> list[Any]:
    """One request, whole or streamed; the events (one response when not streamed)."""
    from agentic_synth._types import Request

    request.setdefault("max_tokens", 16)
    req = Request(messages=[{"role": "user", "content": "hello"}], **request)
    model = "claude-x" if provider.name == "anthropic" else "gpt-x"
    if streamed:
        return [event async for event in provider.stream(model, req)]
    return [await provider.complete(model, req)]


def ok_json(kind: str) -> dict[str, Any]:
    """A minimal complete answer in ``kind``'s wire format."""
    if kind == "anthropic":
        return {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-x",
            "content": [{"type": "text", "text": "ok"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 1, "output_tokens": 1},
        }
    return {
        "id": "c1",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1},
    }


def ok_handler(kind: str) -> Handler:
    """Answers every request with :func:`ok_json`."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response(ok_json(kind))

    return handler


def scripted_for(kind: str, handler: Handler | None = None) -> ScriptedServer:
    """A :class:`ScriptedServer` on ``kind``'s path (start it, then use its ``origin``)."""
    return ScriptedServer(api_path(kind), handler or ok_handler(kind))


def origin_of(server: ScriptedServer) -> str:
    return str(server.server.make_url("")).rstrip("/")


def key_windows(key: str, size: int = 6) -> set[str]:
    """Every ``size``-character run of ``key`` and of its JSON, repr and URL-escaped forms."""
    import urllib.parse

    forms = {key, json.dumps(key)[1:-1], repr(key)[1:-1], urllib.parse.quote(key, safe="")}
    return {form[i : i + size] for form in forms for i in range(len(form) - size + 1)}


def exception_texts(exc: BaseException) -> list[str]:
    """Everything an exception shows: str, repr, args, and the formatted cause/context chain."""
    import traceback

    texts = ["".join(traceback.format_exception(exc))]
    item: BaseException | None = exc
    seen: set[int] = set()
    while item is not None and id(item) not in seen:
        seen.add(id(item))
        texts += [str(item), repr(item), *(repr(a) for a in item.args)]
        item = item.__cause__ or item.__context__
    return texts


def assert_no_key(exc: BaseException, key: str = ECHO_KEY) -> None:
    """No run of 6 characters of ``key`` (in any escaped form) shows anywhere in ``exc``."""
    windows = key_windows(key)
    for text in exception_texts(exc):
        leaked = sorted(w for w in windows if w in text)
        assert not leaked, f"key material {leaked} in {text[:500]!r}"


# ----------------------------------------------------------------- a loopback proxy


class LoopbackProxy:
    """A forward and ``CONNECT`` proxy on loopback that takes every request to one upstream
    port, whatever host it names; records each connection's first request head."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.heads: list[bytes] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def requests(self) -> list[str]:
        """The request lines seen (``CONNECT host:port HTTP/1.1``, ``POST http://...``)."""
        return [head.split(b"\r\n", 1)[0].decode() for head in self.heads]

    async def __aenter__(self) -> LoopbackProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.heads.append(head)
            line, _, rest = head.partition(b"\r\n")
            method, target, version = line.split(b" ")
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            if method == b"CONNECT":
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:  # absolute form to origin form
                path = b"/" + target.split(b"://", 1)[1].partition(b"/")[2]
                up_writer.write(b" ".join((method, path, version)) + b"\r\n" + rest)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)  # type: ignore[arg-type]
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()
