"""A small HTTP/1.1 client for one origin: asyncio ``Protocol`` connections parsed by httptools.

Why not aiohttp: at hundreds of concurrent requests a wave of answers arrives at
once and the event loop parses them one after another; aiohttp's per-response
machinery (streams, multidicts, timers, cancel scopes) makes that wave CPU-bound.
This client does the least per response: one write per request, httptools
callbacks straight into a future, one ``call_at`` deadline.

Scope, deliberately narrow: one origin (``http`` or ``https``), a keep-alive pool
of at most ``max_connections`` connections with one request in flight on each
(no pipelining), Content-Length, chunked and read-until-close bodies, no
redirects, cookies, compression (``Accept-Encoding: identity``), ``HEAD`` or
proxies: a proxied deployment uses the provider's ``transport="aiohttp"``.

A request sent on a kept-alive connection that turns out dead before any byte
of the answer is *not* resent (a POST may not be idempotent): it fails with
``LeanHTTPError("reset")`` and the caller's retry policy decides.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import Literal, NamedTuple, cast

import httptools

__all__ = ["LeanHTTPClient", "LeanHTTPError", "LeanResponse", "LeanStream"]

Reason = Literal["connect", "reset", "malformed", "truncated", "timeout", "closed"]

#: Bytes a streaming reader may leave unread before the socket stops being read.
_STREAM_HIGH_WATER = 1 << 18


class LeanHTTPError(Exception):
    """A transport failure; ``reason`` says which, so callers can map it without parsing text."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: Reason = reason


class LeanResponse(NamedTuple):
    """A whole answer: status, headers (names lower-cased), body and the status line's reason."""

    status: int
    headers: dict[str, str]
    body: bytes
    reason: str


class _Conn(asyncio.Protocol):
    """One connection: parses answers and hands them to the request waiting on it."""

    def __init__(self, pool: LeanHTTPClient, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.lost: asyncio.Future[None] = loop.create_future()
        self.closed = False
        self.idle = False
        self.reset_message()

    def reset_message(self) -> None:
        self.fut: asyncio.Future[None] | None = None
        self.status = 0
        self.reason = b""
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.buffered = 0
        self.paused = False
        self.got_bytes = False
        self.complete = False
        self.keep = True
        self.until_eof = False
        self.error: LeanHTTPError | None = None
        # Streaming: wake the reader when body bytes, the end or an error arrive.
        self.streaming = False
        self.reader: asyncio.Future[None] | None = None

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.fut is None:
            # Bytes while no request is in flight: the connection is not usable.
            self.keep = False
            self.close()
            return
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.fail(LeanHTTPError("malformed", f"bad HTTP response: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.lost.done():
            self.lost.set_result(None)
        if self.fut is not None and not self.complete:
            if self.until_eof and exc is None:
                self.on_message_complete()
            elif not self.got_bytes:
                self.fail(LeanHTTPError("reset", _why("connection closed before an answer", exc)))
            else:
                self.fail(LeanHTTPError("truncated", _why("connection closed mid-answer", exc)))
        self.pool._lost(self)

    # -- httptools callbacks
    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep = self.parser.should_keep_alive()
        if not self.keep:
            # A body delimited by the end of the connection also rules out keep-alive,
            # so the common case skips this look at the headers.
            names = {name.lower() for name, _ in self.raw_headers}
            self.until_eof = (
                b"content-length" not in names
                and b"transfer-encoding" not in names
                and self.status not in (204, 304)
                and self.status >= 200
            )
        if self.streaming:
            self._resolve()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)
        if self.streaming:
            self.buffered += len(body)
            if self.buffered > _STREAM_HIGH_WATER and not self.paused and self.transport:
                self.paused = True
                self.transport.pause_reading()
            self._wake_reader()

    def on_message_complete(self) -> None:
        self.complete = True
        if self.streaming:
            self._wake_reader()
        else:
            self._resolve()

    # -- helpers
    def _resolve(self) -> None:
        fut = self.fut
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _wake_reader(self) -> None:
        reader = self.reader
        if reader is not None and not reader.done():
            reader.set_result(None)

    def fail(self, error: LeanHTTPError) -> None:
        """End the current exchange with ``error`` (first error wins)."""
        self.keep = False
        if self.error is None:
            self.error = error
        fut = self.fut
        if fut is not None and not fut.done():
            fut.set_exception(error)
        self._wake_reader()

    def timed_out(self) -> None:
        self.fail(LeanHTTPError("timeout", "no complete answer before the deadline"))
        self.close()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


def _why(text: str, exc: BaseException | None) -> str:
    return text if exc is None else f"{text} ({type(exc).__name__}: {exc})"


def _headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        out[key] = f"{out[key]}, {text}" if key in out else text
    return out


class LeanStream:
    """An answer whose body is read as it arrives; :meth:`close` it when done (idempotent).

    Closing before the body ended closes the connection at once (the server sees
    the client go away); closing after it ended returns the connection to the pool.
    """

    def __init__(
        self, pool: LeanHTTPClient, conn: _Conn, timer: asyncio.TimerHandle | None
    ) -> None:
        self._pool = pool
        self._conn = conn
        self._timer = timer
        self._done = False
        self.status = conn.status
        self.reason = conn.reason.decode("latin-1")
        self.headers = _headers(conn.raw_headers)

    def at_eof(self) -> bool:
        """Whether the whole body has been received and handed out."""
        return self._conn.complete and not self._conn.body

    async def chunks(self) -> AsyncIterator[bytes]:
        """Body pieces (de-chunked) as they arrive; raises :class:`LeanHTTPError` on failure."""
        conn = self._conn
        while True:
            if self._done:
                raise LeanHTTPError("closed", "the stream was closed")
            if conn.body:
                pieces, conn.body, conn.buffered = conn.body, [], 0
                if conn.paused and conn.transport is not None and not conn.closed:
                    conn.paused = False
                    conn.transport.resume_reading()
                for piece in pieces:
                    yield piece
                continue
            if conn.error is not None:
                raise conn.error
            if conn.complete:
                return
            conn.reader = conn.loop.create_future()
            try:
                await conn.reader
            finally:
                conn.reader = None

    async def read(self) -> bytes:
        """The rest of the body."""
        return b"".join([piece async for piece in self.chunks()])

    def close(self) -> None:
        if self._done:
            return
        self._done = True
        if self._timer is not None:
            self._timer.cancel()
        conn = self._conn
        if not (conn.complete and conn.error is None):
            conn.keep = False
        self._pool._release(conn)


class LeanHTTPClient:
    """Keep-alive connections to one origin, at most ``max_connections`` open at once.

    Bound to the event loop of its first request (like any asyncio transport).
    """

    def __init__(
        self,
        scheme: str,
        host: str,
        port: int | None,
        *,
        max_connections: int,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if scheme not in ("http", "https"):
            raise ValueError(f"scheme must be http or https, got {scheme!r}")
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections!r}")
        default_port = 443 if scheme == "https" else 80
        self._host = host
        self._port = port or default_port
        self._ssl = (ssl_context or ssl.create_default_context()) if scheme == "https" else None
        name = f"[{host}]" if ":" in host else host
        self._host_header = name if self._port == default_port else f"{name}:{self._port}"
        self._limit = max_connections
        self._idle: deque[_Conn] = deque()
        self._conns: set[_Conn] = set()
        self._opening = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def open_connections(self) -> int:
        """Connections open or being opened."""
        return len(self._conns) + self._opening

    def _head(self, method: str, target: str, headers: Mapping[str, str], size: int) -> bytes:
        if method == "HEAD":
            raise ValueError("HEAD is not supported")
        lines = [
            f"{method} {target} HTTP/1.1\r\nHost: {self._host_header}\r\n"
            "Connection: keep-alive\r\nAccept-Encoding: identity\r\n"
        ]
        lines.extend(f"{name}: {value}\r\n" for name, value in headers.items())
        lines.append(f"Content-Length: {size}\r\n\r\n")
        return "".join(lines).encode("latin-1")

    async def _acquire(self, deadline: float | None) -> _Conn:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError("LeanHTTPClient used from another event loop")
        while True:
            if self._idle:
                conn = self._idle.pop()  # LIFO: the warmest connection
                conn.idle = False
                if conn.closed or conn.transport is None or conn.transport.is_closing():
                    self._conns.discard(conn)
                    continue
                return conn
            if self.open_connections < self._limit:
                return await self._connect(loop, deadline)
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except BaseException as exc:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # pass on the slot we were given
                else:
                    waiter.cancel()
                if isinstance(exc, TimeoutError):
                    raise LeanHTTPError("timeout", "no free connection in time") from None
                raise

    async def _connect(self, loop: asyncio.AbstractEventLoop, deadline: float | None) -> _Conn:
        self._opening += 1
        try:
            async with asyncio.timeout_at(deadline):
                _, conn = await loop.create_connection(
                    lambda: _Conn(self, loop),
                    self._host,
                    self._port,
                    ssl=self._ssl,
                    server_hostname=self._host if self._ssl is not None else None,
                )
        except BaseException as exc:
            self._opening -= 1
            self._wake()  # the slot we were about to use is free again
            if isinstance(exc, TimeoutError):
                raise LeanHTTPError("timeout", "connect timed out") from None
            if isinstance(exc, OSError):
                raise LeanHTTPError("connect", f"{type(exc).__name__}: {exc}") from exc
            raise
        self._opening -= 1
        self._conns.add(conn)
        return conn

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _release(self, conn: _Conn) -> None:
        reusable = conn.keep and conn.complete and conn.error is None and not conn.closed
        if reusable and conn.paused and conn.transport is not None:
            conn.transport.resume_reading()  # an idle connection must notice a close
        conn.reset_message()
        if reusable and conn in self._conns:
            conn.idle = True
            self._idle.append(conn)
        else:
            conn.close()
            self._conns.discard(conn)
        self._wake()

    def _lost(self, conn: _Conn) -> None:
        if conn.idle:
            conn.idle = False
            self._idle.remove(conn)
        if conn in self._conns and conn.fut is None:
            self._conns.discard(conn)
            self._wake()

    async def _send(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes,
        total: float | None,
        streaming: bool,
    ) -> tuple[_Conn, asyncio.TimerHandle | None]:
        loop = asyncio.get_running_loop()
        deadline = None if total is None else loop.time() + total
        head = self._head(method, target, headers, len(body))
        conn = await self._acquire(deadline)
        conn.fut = fut = loop.create_future()
        conn.streaming = streaming
        timer = None if deadline is None else loop.call_at(deadline, conn.timed_out)
        try:
            assert conn.transport is not None
            conn.transport.write(head + body)
            await fut
        except BaseException:
            if timer is not None:
                timer.cancel()
            conn.keep = False
            self._release(conn)
            raise
        return conn, timer

    async def request(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes = b"",
        *,
        total: float | None = None,
    ) -> LeanResponse:
        """Send one request and read the whole answer; ``total`` seconds bound all of it."""
        conn, timer = await self._send(method, target, headers, body, total, False)
        if timer is not None:
            timer.cancel()
        pieces = conn.body
        answer = LeanResponse(
            conn.status,
            _headers(conn.raw_headers),
            pieces[0] if len(pieces) == 1 else b"".join(pieces),
            conn.reason.decode("latin-1"),
        )
        self._release(conn)
        return answer

    async def stream(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes = b"",
        *,
        total: float | None = None,
    ) -> LeanStream:
        """Send one request; return once the answer's headers are in.

        ``total`` seconds bound the whole exchange, body included.
        """
        conn, timer = await self._send(method, target, headers, body, total, True)
        return LeanStream(self, conn, timer)

    async def aclose(self) -> None:
        """Close every connection, in flight or idle, and wait until they are closed."""
        conns = list(self._conns)
        self._idle.clear()
        self._conns.clear()
        for conn in conns:
            conn.idle = False
            conn.keep = False
            conn.close()
        lost = [conn.lost for conn in conns if not conn.lost.done()]
        if lost:
            await asyncio.wait(lost, timeout=1.0)
