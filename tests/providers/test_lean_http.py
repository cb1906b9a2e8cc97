"""The lean HTTP/1.1 client against small asyncio servers that script the wire byte by byte."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from agentic_synth._spec import ResponseLimits
from agentic_synth.providers._lean_http import LeanHTTPClient, LeanHTTPError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Server"], Awaitable[None]]


class Server:
    """A loopback server running ``handler`` per connection and counting what it sees."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.open = 0
        self.max_open = 0
        self.requests: list[tuple[bytes, bytes]] = []
        self.eofs = 0
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        try:
            await self.handler(reader, writer, self)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open -= 1
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes | None:
        """One request's head (body read and recorded too); ``None`` when the client hung up."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            self.eofs += 1
            return None
        size = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                size = int(line.split(b":", 1)[1])
        body = await reader.readexactly(size)
        self.requests.append((head, body))
        return head

    @property
    def port(self) -> int:
        assert self.server is not None
        port: int = self.server.sockets[0].getsockname()[1]
        return port


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[Server]]]:
    servers: list[Server] = []

    async def start(handler: Handler) -> Server:
        s = Server(handler)
        s.server = await asyncio.start_server(s._serve, "127.0.0.1", 0)
        servers.append(s)
        return s

    yield start
    for s in servers:
        assert s.server is not None
        s.server.close()


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[Server]:
    """The ``serve`` fixture as a context manager, for the other test_lean_http_* modules."""
    s = Server(handler)
    s.server = await asyncio.start_server(s._serve, "127.0.0.1", 0)
    try:
        yield s
    finally:
        s.server.close()


def client_for(
    server: Server, limit: int = 4, limits: ResponseLimits | None = None
) -> LeanHTTPClient:
    return LeanHTTPClient("http", "127.0.0.1", server.port, max_connections=limit, limits=limits)


def ok(body: bytes, *extra: bytes) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Request-Id: r1\r\n" % len(body)
    return head + b"".join(extra) + b"\r\n" + body


async def echo_forever(reader: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
    while await s.read_request(reader) is not None:
        w.write(ok(s.requests[-1][1].upper()))
        await w.drain()


async def wait_for(condition: Callable[[], bool]) -> None:
    for _ in range(300):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met")


async def test_content_length_request_building_and_keep_alive(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    server = await serve(echo_forever)
    client = client_for(server)
    try:
        for body in (b"hello", b"again"):
            out = await client.request("POST", "/v1/x?q=1", {"Authorization": "Bearer k"}, body)
            assert (out.status, out.reason, out.body) == (200, "OK", body.upper())
            assert out.headers["x-request-id"] == "r1"
    finally:
        await client.aclose()
    head = server.requests[0][0]
    assert head.startswith(b"POST /v1/x?q=1 HTTP/1.1\r\n")
    for line in (
        b"Host: 127.0.0.1:%d" % server.port,
        b"Content-Length: 5",
        b"Connection: keep-alive",
        b"Accept-Encoding: identity",
        b"Authorization: Bearer k",
    ):
        assert line + b"\r\n" in head
    assert server.connections == 1


async def test_chunked_body_split_across_packets(serve: Callable[..., Awaitable[Server]]) -> None:
    wire = (
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nSet-A: 1\r\nset-a: 2\r\n\r\n"
        b"5\r\nhello\r\n1;ext=1\r\n,\r\n6\r\n world\r\n0\r\n\r\n"
    )

    async def handler(reader: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        while await s.read_request(reader) is not None:
            for i in range(0, len(wire), 7):
                w.write(wire[i : i + 7])
                await w.drain()
                await asyncio.sleep(0.001)

    server = await serve(handler)
    client = client_for(server)
    try:
        for _ in range(2):
            out = await client.request("POST", "/", {}, b"{}")
            assert (out.status, out.body) == (201, b"hello, world")
            assert out.headers["set-a"] == "1, 2"
    finally:
        await client.aclose()
    assert server.connections == 1


async def test_connection_close_is_honoured(serve: Callable[..., Awaitable[Server]]) -> None:
    async def handler(reader: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)
        w.write(ok(b"bye", b"Connection: close\r\n"))
        await w.drain()
        await reader.read()  # wait for the client to hang up

    server = await serve(handler)
    client = client_for(server)
    try:
        for _ in range(3):
            assert (await client.request("POST", "/", {}, b"")).body == b"bye"
        await wait_for(lambda: server.open == 0)
    finally:
        await client.aclose()
    assert server.connections == 3


async def test_body_until_close(serve: Callable[..., Awaitable[Server]]) -> None:
    async def handler(reader: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)
        w.write(b"HTTP/1.1 200 OK\r\n\r\npart one ")
        await w.drain()
        await asyncio.sleep(0.01)
        w.write(b"part two")
        await w.drain()

    server = await serve(handler)
    client = client_for(server)
    try:
        assert (await client.request("POST", "/", {}, b"")).body == b"part one part two"
        assert (await client.request("POST", "/", {}, b"")).body == b"part one part two"
    finally:
        await client.aclose()
    assert server.connections == 2


async def test_idle_connection_closed_by_server_is_dropped(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    async def handler(reader: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)
        w.write(ok(b"one"))
        await w.drain()
        # Keep-alive promised, then the server times the idle connection out.

    server = await serve(handler)
    client = client_for(server)
    try:
        assert (await client.request("POST", "/", {}, b"")).body == b"one"
        await wait_for(lambda: client.open_connections == 0)
        assert (await client.request("POST", "/", {}, b"")).body == b"one"
    finally:
        await client.aclose()
    assert server.connections == 2 and len(server.requests) == 2


async def test_request_on_a_dead_connection_is_not_resent(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    async def handler(reader: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)  # read it, then hang up without a byte of answer

    server = await serve(handler)
    client = client_for(server)
    try:
        with pytest.raises(LeanHTTPError) as info:
            await client.request("POST", "/", {}, b"{}")
        assert info.value.reason == "reset"
        await asyncio.sleep(0.05)
    finally:
        await client.aclose()
    assert server.connections == 1 and len(server.requests) == 1


async def test_connection_dying_mid_response(serve: Callable[..., Awaitable[Server]]) -> None:
    async def handler(reader: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly some")
        await w.drain()

    server = await serve(handler)
    client = client_for(server)
    try:
        with pytest.raises(LeanHTTPError) as info:
            await client.request("POST", "/", {}, b"")
        assert info.value.reason == "truncated"
        stream = await client.stream("POST", "/", {}, b"")
        with pytest.raises(LeanHTTPError, match="truncated"):
            assert await stream.read() == b""
        stream.close()
        assert client.open_connections == 0
    finally:
        await client.aclose()


async def test_malformed_status_line(serve: Callable[..., Awaitable[Server]]) -> None:
    async def handler(reader: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)
        w.write(b"HTTX/1.1 2OO OK\r\n\r\n")
        await w.drain()
        await reader.read()

    server = await serve(handler)
    client = client_for(server)
    try:
        with pytest.raises(LeanHTTPError) as info:
            await client.request("POST", "/", {}, b"")
        assert info.value.reason == "malformed"
        await wait_for(lambda: server.open == 0)
    finally:
        await client.aclose()


async def test_timeout_closes_the_connection(serve: Callable[..., Awaitable[Server]]) -> None:
    async def handler(reader: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        while await s.read_request(reader) is not None:
            if len(s.requests) > 1:
                w.write(ok(b"late"))

    server = await serve(handler)
    client = client_for(server)
    try:
        with pytest.raises(LeanHTTPError) as info:
            await client.request("POST", "/", {}, b"", total=0.05)
        assert info.value.reason == "timeout"
        await wait_for(lambda: server.eofs == 1)
        assert client.open_connections == 0
        assert (await client.request("POST", "/", {}, b"", total=5)).body == b"late"
    finally:
        await client.aclose()
    assert server.connections == 2


async def test_streaming_yields_pieces_as_they_arrive_and_reuses_the_connection(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    go_on = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        while await s.read_request(reader) is not None:
            w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\none\r\n")
            await w.drain()
            await go_on.wait()
            w.write(b"3\r\ntwo\r\n0\r\n\r\n")
            await w.drain()

    server = await serve(handler)
    client = client_for(server)
    try:
        stream = await client.stream("POST", "/", {}, b"")
        assert stream.status == 200 and not stream.at_eof()
        pieces = stream.chunks()
        assert await anext(pieces) == b"one"  # before the server sends the rest
        go_on.set()
        assert [p async for p in pieces] == [b"two"]
        assert stream.at_eof()
        stream.close()
        stream.close()
        assert (await (await client.stream("POST", "/", {}, b"")).read()) == b"onetwo"
    finally:
        await client.aclose()
    assert server.connections == 1


async def test_large_streamed_bodies_pause_reading_and_reuse(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    """Bodies beyond the read-ahead limit pause the socket; a reused connection reads again."""
    sizes = iter([1 << 20, 300_000, 10])

    async def handler(reader: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        while await s.read_request(reader) is not None:
            w.write(ok(b"x" * next(sizes)))
            await w.drain()

    server = await serve(handler)
    client = client_for(server)
    try:
        stream = await client.stream("POST", "/", {}, b"")
        assert await stream.read() == b"x" * (1 << 20)
        stream.close()
        # Complete while paused, never read: the idle connection must be resumed.
        stream = await client.stream("POST", "/", {}, b"")
        await wait_for(lambda: stream._conn.complete)
        assert stream._conn.paused
        stream.close()
        assert (await client.request("POST", "/", {}, b"", total=5)).body == b"x" * 10
    finally:
        await client.aclose()
    assert server.connections == 1


async def test_streaming_early_close_closes_the_connection(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    async def handler(reader: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(500):
            w.write(b"4\r\nt%03d\r\n" % i)
            await w.drain()
            await asyncio.sleep(0.01)
        w.write(b"0\r\n\r\n")

    server = await serve(handler)
    client = client_for(server)
    try:
        stream = await client.stream("POST", "/", {}, b"")
        assert await anext(stream.chunks()) == b"t000"
        stream.close()
        assert client.open_connections == 0
        await wait_for(lambda: server.open == 0)
    finally:
        await client.aclose()


async def test_pool_never_exceeds_its_limit(serve: Callable[..., Awaitable[Server]]) -> None:
    client: LeanHTTPClient | None = None
    seen_open: list[int] = []

    async def handler(reader: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        while await s.read_request(reader) is not None:
            assert client is not None
            seen_open.append(client.open_connections)
            body = s.requests[-1][1]
            await asyncio.sleep(0.002)
            w.write(ok(body))
            await w.drain()

    server = await serve(handler)
    client = client_for(server, limit=8)
    try:
        bodies = [b"%d" % i for i in range(200)]
        answers = await asyncio.gather(*(client.request("POST", "/", {}, b) for b in bodies))
        assert [a.body for a in answers] == bodies
    finally:
        await client.aclose()
    assert server.max_open <= 8 and server.connections <= 8
    assert max(seen_open) <= 8 and len(seen_open) == 200


async def test_cancelled_waiters_do_not_leak_slots(serve: Callable[..., Awaitable[Server]]) -> None:
    server = await serve(echo_forever)
    client = client_for(server, limit=1)
    try:
        first = asyncio.ensure_future(client.request("POST", "/", {}, b"a"))
        second = asyncio.ensure_future(client.request("POST", "/", {}, b"b"))
        await asyncio.sleep(0)
        second.cancel()
        assert (await first).body == b"A"
        with pytest.raises(asyncio.CancelledError):
            await second
        assert (await client.request("POST", "/", {}, b"c", total=5)).body == b"C"
    finally:
        await client.aclose()


async def test_connect_failure_and_aclose(serve: Callable[..., Awaitable[Server]]) -> None:
    dead = LeanHTTPClient("http", "127.0.0.1", 9, max_connections=1)
    with pytest.raises(LeanHTTPError) as info:
        await dead.request("POST", "/", {}, b"")
    assert info.value.reason == "connect" and dead.open_connections == 0
    assert info.value.kind == "refused" and "127.0.0.1:9" in str(info.value)
    server = await serve(echo_forever)
    client = client_for(server)
    await asyncio.gather(*(client.request("POST", "/", {}, b"x") for _ in range(3)))
    assert client.open_connections == 3
    await client.aclose()
    assert client.open_connections == 0
    await wait_for(lambda: server.eofs == 3)


def test_host_header_and_arguments() -> None:
    assert LeanHTTPClient("https", "api.x.com", None, max_connections=1)._host_header == "api.x.com"
    assert LeanHTTPClient("http", "::1", 8080, max_connections=1)._host_header == "[::1]:8080"
    with pytest.raises(ValueError, match="scheme"):
        LeanHTTPClient("ftp", "h", None, max_connections=1)
    with pytest.raises(ValueError, match="max_connections"):
        LeanHTTPClient("http", "h", None, max_connections=0)


def test_works_on_uvloop() -> None:
    """uvloop's transports are not ``asyncio.Transport`` subclasses; `synth` runs on uvloop."""
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> tuple[bytes, bytes, int]:
        server = Server(echo_forever)
        server.server = await asyncio.start_server(server._serve, "127.0.0.1", 0)
        client = client_for(server)
        try:
            whole = (await client.request("POST", "/", {}, b"abc")).body
            stream = await client.stream("POST", "/", {}, b"def")
            streamed = await stream.read()
            stream.close()
        finally:
            await client.aclose()
            server.server.close()
        return whole, streamed, server.connections

    assert uvloop.run(scenario()) == (b"ABC", b"DEF", 1)


async def test_https_with_certificate_verification() -> None:
    import ssl

    import trustme

    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecure")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    try:
        # verified against the test CA, hostname checked
        client = LeanHTTPClient("https", "localhost", port, max_connections=2, ssl_context=trusting)
        try:
            out = await client.request("GET", "/", {})
            assert (out.status, out.body) == (200, b"secure")
        finally:
            await client.aclose()
        # the system trust store does not know the test CA: refused, not silently accepted
        strict = LeanHTTPClient("https", "localhost", port, max_connections=1)
        try:
            with pytest.raises(LeanHTTPError) as info:
                await strict.request("GET", "/", {})
            assert info.value.reason == "connect" and info.value.kind == "tls"
            assert f"localhost:{port}" in str(info.value)
        finally:
            await strict.aclose()
    finally:
        server.close()
        await server.wait_closed()
