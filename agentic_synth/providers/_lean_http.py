"""A small HTTP/1.1 client for one origin: asyncio ``Protocol`` connections parsed by httptools.

Why not aiohttp: at hundreds of concurrent requests a wave of answers arrives at
once and the event loop parses them one after another; aiohttp's per-response
machinery (streams, multidicts, timers, cancel scopes) makes that wave CPU-bound.
This client does the least per response: one write per request, httptools
callbacks straight into a future, and a timer per connection, not per request.

Scope, deliberately narrow: one origin (``http`` or ``https``), a keep-alive pool
of at most ``max_connections`` connections with one request in flight on each
(no pipelining), Content-Length, chunked and read-until-close bodies, no
cookies, compression (``Accept-Encoding: identity``), ``HEAD`` or proxies: a
proxied deployment uses the provider's ``transport="aiohttp"``. Redirects are
never followed: a 3xx is returned like any other answer. Interim 1xx answers
(100 Continue, 103 Early Hints, ...) are skipped; the caller sees the final one.

The server is not trusted. :class:`~agentic_synth._spec.ResponseLimits` bound what it
can make us hold: the status line and headers (``max_header_bytes``, interim
answers included, and ``max_headers`` fields) and the body (``max_body_bytes``,
counted as it arrives, streamed or not). The bytes after the head, chunk framing
and trailers included (httptools buffers a trailer itself), are bounded by
``max_header_bytes + 2 * max_body_bytes``. Past a limit the connection is closed
at once and the call fails with ``LeanHTTPError("too_large")``.
``read_idle_timeout`` seconds without a byte while an answer is expected fail it
with ``"timeout"``, apart from the call's ``total``. All of this costs a few
integer operations per read: the deadline and the idle limit share one
``call_at`` per connection, left in place while it is due no later than needed
and re-armed (from the time of the last byte) only when it fires early.

A request sent on a kept-alive connection that turns out dead before any byte
of the answer (a reset or end of stream, on the write or while waiting) is sent
again, once, on a newly opened connection; it fails with ``LeanHTTPError("reset")``
only when that connection was opened for it. The usual cause is the server
closing the connection for being idle while our request was on its way: a
server closes a keep-alive connection between requests, so the request it never
answered was never handed to its application, and resending even a POST does
not run it twice. (A server that reads a request and then dies without a byte
of answer looks the same from here; that request runs at most twice. After any
byte of answer, or on a connection opened for this request, nothing is resent:
the caller's retry policy decides.)

The pool hands a released connection (or a freed slot) straight to the request
that has waited longest, so requests are served in arrival order; running out
of ``total`` while waiting for one is ``"pool_timeout"``, a client-side
condition. Connecting uses happy eyeballs (RFC 8305, address families
interleaved) for a host name: through ``loop.create_connection`` where the
loop supports it, with this module's own staggered connect where it does not
(uvloop). A failed connect is ``"connect"``, its :attr:`LeanHTTPError.kind`
saying what failed. Connecting (all addresses, and the TLS handshake) has
``connect_timeout`` seconds: a host that drops our packets shows as a connect
failure of kind ``"timeout"`` then, not as a request that used up the call's
whole ``total``; when ``total`` runs out first, the failure is ``"timeout"``.
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import ipaddress
import itertools
import re
import socket
import ssl
from asyncio import staggered
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from functools import partial
from typing import Any, Literal, NamedTuple, cast

import httptools

from .._spec import ResponseLimits

__all__ = ["LeanHTTPClient", "LeanHTTPError", "LeanResponse", "LeanStream"]

Reason = Literal[
    "connect",
    "reset",
    "malformed",
    "truncated",
    "timeout",
    "closed",
    "too_large",
    "pool_timeout",
]
#: What a ``"connect"`` failure was: name resolution, nothing listening, no route,
#: the TLS handshake (certificate verification included), no answer within the
#: connect timeout, or anything else.
ConnectKind = Literal["dns", "refused", "unreachable", "tls", "timeout", "other"]

#: Bytes a streaming reader may leave unread before the socket stops being read.
_STREAM_HIGH_WATER = 1 << 18
#: A timer may fire up to the loop's clock resolution early; that is not worth a re-arm.
_TIMER_SLACK = 1e-3
_UNREACHABLE = frozenset(
    {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN, errno.EADDRNOTAVAIL}
)
_ERRNO_TEXT = re.compile(r"\[Errno (\d+)\]")

_AddrInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, Any]


class LeanHTTPError(Exception):
    """A transport failure; ``reason`` says which, so callers can map it without parsing text.

    ``kind`` is set for ``"connect"`` failures only (see :data:`ConnectKind`).
    """

    def __init__(self, reason: Reason, detail: str, kind: ConnectKind | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: Reason = reason
        self.detail = detail
        self.kind: ConnectKind | None = kind


class LeanResponse(NamedTuple):
    """A whole answer: status, headers (names lower-cased), body and the status line's reason."""

    status: int
    headers: dict[str, str]
    body: bytes
    reason: str


class _Abort(Exception):
    """Raised inside a parser callback to stop parsing; the error is already recorded."""


class _Conn(asyncio.Protocol):
    """One connection: parses answers and hands them to the request waiting on it."""

    def __init__(self, pool: LeanHTTPClient, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self.loop = loop
        limits = pool._limits
        self.max_head = limits.max_header_bytes
        self.max_headers = limits.max_headers
        self.max_body = limits.max_body_bytes
        #: Bytes on the wire after the head: the body, with room for chunk framing and trailers.
        self.wire_after_head = limits.max_header_bytes + 2 * limits.max_body_bytes
        self.idle_timeout = limits.read_idle_timeout
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.lost: asyncio.Future[None] = loop.create_future()
        self.closed = False
        self.idle = False
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0
        self.deadline: float | None = None
        self.last_read = 0.0
        self.reset_message()

    def reset_message(self) -> None:
        self.fut: asyncio.Future[None] | None = None
        self.status = 0  # set once the final (non-1xx) head is in
        self.reason = b""
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.buffered = 0
        self.paused = False
        self.got_bytes = False
        # Bytes of the wire this answer may still take: the head's budget until the
        # final head is in, then the body's (with room for chunk framing and trailers).
        self.wire_left = 0
        self.body_left = 0
        self.complete = False
        self.keep = True
        self.until_eof = False
        self.error: LeanHTTPError | None = None
        # Streaming: wake the reader when body bytes, the end or an error arrive.
        self.streaming = False
        self.reader: asyncio.Future[None] | None = None

    def usable(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def start(self, data: bytes, streaming: bool, deadline: float | None) -> asyncio.Future[None]:
        """Send one request; the future resolves at the answer (at its head when streaming)."""
        self.fut = fut = self.loop.create_future()
        self.streaming = streaming
        self.wire_left = self.max_head
        self.body_left = self.max_body
        self.deadline = deadline
        self.last_read = self.loop.time()
        self.arm()
        assert self.transport is not None
        self.transport.write(data)
        return fut

    # -- timer: the call's deadline and the read-idle timeout share one call_at
    def arm(self) -> None:
        """Have the timer fire by the exchange's next due time (deadline or idle limit).

        A timer already due earlier is kept, even from an earlier request: firing
        early costs a re-arm now and then, where cancelling and setting one per
        request would cost more than all the rest of its bookkeeping.
        """
        when = self.deadline
        idle = self.idle_timeout
        if idle is not None:
            idle_at = self.last_read + idle
            if when is None or idle_at < when:
                when = idle_at
        timer = self.timer
        if when is None or (timer is not None and self.timer_at <= when):
            return
        if timer is not None:
            timer.cancel()
        self.timer_at = when
        self.timer = self.loop.call_at(when, self.on_timer)

    def disarm(self) -> None:
        timer = self.timer
        if timer is not None:
            self.timer = None
            timer.cancel()

    def on_timer(self) -> None:
        self.timer = None
        if self.fut is None or self.complete or self.error is not None:
            return  # no answer expected: lapse until the next request arms it
        now = self.loop.time()
        if self.deadline is not None and now >= self.deadline - _TIMER_SLACK:
            self.abort(LeanHTTPError("timeout", "no complete answer before the deadline"))
            return
        idle = self.idle_timeout
        if idle is not None:
            if self.paused or not self.status:
                # our reader is behind, or the answer has not started: a non-streamed
                # answer may take minutes to start, and only the deadline bounds that
                self.last_read = now
            elif now >= self.last_read + idle - _TIMER_SLACK:
                self.abort(LeanHTTPError("timeout", f"read idle timeout: no byte for {idle:g} s"))
                return
        self.arm()  # bytes came since it was set: wait from the last one

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
        self.last_read = self.loop.time()
        left = self.wire_left
        try:
            if len(data) <= left:
                self.wire_left = left - len(data)
                self.parser.feed_data(data)
            elif self.status:
                wire = self.wire_after_head
                self.abort(LeanHTTPError("too_large", f"over {wire} bytes after the head"))
            else:
                # The head may end inside this read: parse what its budget allows, then see.
                view = memoryview(data)
                self.parser.feed_data(view[:left])
                if not self.status:
                    self.abort(LeanHTTPError("too_large", f"head over {self.max_head} bytes"))
                    return
                self.parser.feed_data(view[left:])
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            if self.complete and self.error is None:
                # The answer was whole; bytes after it make the connection unusable.
                self.keep = False
                self.close()
            else:
                self.abort(LeanHTTPError("malformed", f"bad HTTP response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.disarm()
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
    def on_message_begin(self) -> None:
        if self.complete:
            raise _Abort  # a second answer to one request

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.status:  # after the head: a trailer, not kept
            self.raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        if len(self.raw_headers) > self.max_headers:
            self.abort(LeanHTTPError("too_large", f"more than {self.max_headers} header fields"))
            raise _Abort
        status = self.parser.get_status_code()
        if status < 200:
            if status == 101:
                self.abort(LeanHTTPError("malformed", "101 Switching Protocols was not asked for"))
                raise _Abort
            return  # an interim answer: no body, the final answer follows
        self.status = status
        self.wire_left = self.wire_after_head
        self.keep = self.parser.should_keep_alive()
        if not self.keep:
            # A body delimited by the end of the connection also rules out keep-alive,
            # so the common case skips this look at the headers.
            names = {name.lower() for name, _ in self.raw_headers}
            self.until_eof = (
                b"content-length" not in names
                and b"transfer-encoding" not in names
                and status not in (204, 304)
            )
        if self.streaming:
            self._resolve()

    def on_body(self, body: bytes) -> None:
        left = self.body_left - len(body)
        self.body_left = left
        if left < 0:
            self.abort(LeanHTTPError("too_large", f"body over {self.max_body} bytes"))
            raise _Abort
        self.body.append(body)
        if self.streaming:
            self.buffered += len(body)
            if self.buffered > _STREAM_HIGH_WATER and not self.paused and self.transport:
                self.paused = True
                self.transport.pause_reading()
            self._wake_reader()

    def on_message_complete(self) -> None:
        if not self.status:
            # An interim (1xx) answer ended: forget it, the final one follows.
            self.reason = b""
            self.raw_headers = []
            return
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
        self.disarm()
        if self.error is None:
            self.error = error
        fut = self.fut
        if fut is not None and not fut.done():
            fut.set_exception(error)
        self._wake_reader()

    def abort(self, error: LeanHTTPError) -> None:
        """Fail the exchange and close the connection at once."""
        self.fail(error)
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


def _connect_kind(exc: OSError) -> ConnectKind:
    if isinstance(exc, socket.gaierror):
        return "dns"
    if isinstance(exc, ssl.SSLError):
        return "tls"
    if exc.errno is not None:
        codes = {exc.errno}
    else:
        # create_connection folds the failures of several addresses into one
        # "Multiple exceptions: [Errno 111] ..., [Errno 101] ..." OSError.
        codes = {int(code) for code in _ERRNO_TEXT.findall(str(exc))}
    if errno.ECONNREFUSED in codes:
        return "refused"  # at least one address answered: nothing listens on the port
    if codes and codes <= _UNREACHABLE:
        return "unreachable"
    return "other"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _supports_happy_eyeballs(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return "happy_eyeballs_delay" in inspect.signature(loop.create_connection).parameters
    except (TypeError, ValueError):
        return False


def _interleave(infos: Sequence[_AddrInfo]) -> list[_AddrInfo]:
    """Alternate address families, the resolver's first one first (RFC 8305, section 4)."""
    families: dict[int, list[_AddrInfo]] = {}
    for info in infos:
        families.setdefault(info[0], []).append(info)
    rounds = itertools.zip_longest(*families.values())
    return [info for round_ in rounds for info in round_ if info is not None]


async def _attempt(loop: asyncio.AbstractEventLoop, info: _AddrInfo) -> socket.socket:
    family, kind, proto, _, address = info
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await loop.sock_connect(sock, address)
    except BaseException:
        sock.close()
        raise
    return sock


async def _staggered_connect(
    loop: asyncio.AbstractEventLoop, host: str, port: int, delay: float
) -> socket.socket:
    """Happy eyeballs for loops whose ``create_connection`` lacks it (uvloop): a new
    attempt every ``delay`` seconds, or as soon as the previous one fails; first wins."""
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if len(infos) == 1:
        return await _attempt(loop, infos[0])
    attempts = [partial(_attempt, loop, info) for info in _interleave(infos)]
    winner, _, errors = await staggered.staggered_race(attempts, delay)
    if winner is not None:
        return cast(socket.socket, winner)
    failures = [exc for exc in errors if exc is not None]
    if not failures:
        raise OSError(f"getaddrinfo({host!r}) returned no address")
    first = failures[0]
    if len(failures) == 1 or all(str(exc) == str(first) for exc in failures):
        raise first
    # The same shape as asyncio's and uvloop's create_connection.
    raise OSError(f"Multiple exceptions: {', '.join(str(exc) for exc in failures)}")


class LeanStream:
    """An answer whose body is read as it arrives; :meth:`close` it when done (idempotent).

    Closing before the body ended closes the connection at once (the server sees
    the client go away); closing after it ended returns the connection to the pool.
    """

    def __init__(self, pool: LeanHTTPClient, conn: _Conn) -> None:
        self._pool = pool
        self._conn = conn
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
        conn = self._conn
        if not (conn.complete and conn.error is None):
            conn.keep = False
        self._pool._release(conn)


class LeanHTTPClient:
    """Keep-alive connections to one origin, at most ``max_connections`` open at once.

    ``limits`` bound what a response may make us hold (``None``: the defaults of
    :class:`~agentic_synth._spec.ResponseLimits`); ``happy_eyeballs_delay`` is the head
    start, in seconds, of each connect attempt over the next address (``None``:
    one address after the other); ``connect_timeout`` bounds opening a connection
    (``None``: :data:`~._net.CONNECT_TIMEOUT`). Bound to the event loop of its
    first request (like any asyncio transport).
    """

    def __init__(
        self,
        scheme: str,
        host: str,
        port: int | None,
        *,
        max_connections: int,
        ssl_context: ssl.SSLContext | None = None,
        limits: ResponseLimits | None = None,
        happy_eyeballs_delay: float | None = 0.25,
        connect_timeout: float | None = None,
    ) -> None:
        if scheme not in ("http", "https"):
            raise ValueError(f"scheme must be http or https, got {scheme!r}")
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections!r}")
        if happy_eyeballs_delay is not None and not happy_eyeballs_delay >= 0:
            raise ValueError(f"happy_eyeballs_delay must be >= 0, got {happy_eyeballs_delay!r}")
        if connect_timeout is None:
            # Here, not at the top: _net imports this module.
            from ._net import CONNECT_TIMEOUT

            connect_timeout = CONNECT_TIMEOUT
        if not 0 < connect_timeout < float("inf"):
            raise ValueError(f"connect_timeout must be > 0 seconds, got {connect_timeout!r}")
        default_port = 443 if scheme == "https" else 80
        self._host = host
        self._port = port or default_port
        self._ssl = (ssl_context or ssl.create_default_context()) if scheme == "https" else None
        name = f"[{host}]" if ":" in host else host
        self._host_header = name if self._port == default_port else f"{name}:{self._port}"
        self._origin = f"{name}:{self._port}"
        self._limits = limits or ResponseLimits()
        # An IP address has nothing to race (and connects faster without the machinery).
        self._eyeballs = None if _is_ip(host) else happy_eyeballs_delay
        self._connect_timeout = connect_timeout
        self._native_eyeballs = False
        self._limit = max_connections
        self._idle: deque[_Conn] = deque()
        self._conns: set[_Conn] = set()
        #: Connections being opened, and slots promised to a waiter that will open one.
        self._opening = 0
        #: Oldest first; each gets a released connection, or ``None``: a slot to open one in.
        self._waiters: deque[asyncio.Future[_Conn | None]] = deque()
        #: Seconds requests spent queued for a connection (all busy), for monitoring.
        self.pool_wait_seconds = 0.0
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

    # -- the pool
    async def _acquire(
        self, loop: asyncio.AbstractEventLoop, deadline: float | None
    ) -> tuple[_Conn, bool]:
        """A connection for one request, and whether it served an earlier one."""
        if self._loop is None:
            self._loop = loop
            self._native_eyeballs = _supports_happy_eyeballs(loop)
        elif self._loop is not loop:
            raise RuntimeError("LeanHTTPClient used from another event loop")
        if not self._waiters:  # else queue behind them
            while self._idle:
                conn = self._idle.pop()  # LIFO: the warmest connection
                conn.idle = False
                if conn.usable():
                    return conn, True
                self._conns.discard(conn)
            if self.open_connections < self._limit:
                self._opening += 1
                return await self._open(loop, deadline), False
        waiter: asyncio.Future[_Conn | None] = loop.create_future()
        self._waiters.append(waiter)
        queued = loop.time()
        try:
            async with asyncio.timeout_at(deadline):
                conn_or_slot = await waiter
        except BaseException as exc:
            self.pool_wait_seconds += loop.time() - queued
            if waiter.done() and not waiter.cancelled():
                self._pass_on(waiter.result())  # given to us as we gave up: the next one's
            else:
                waiter.cancel()
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                raise LeanHTTPError(
                    "pool_timeout",
                    f"all {self._limit} connections to {self._origin} stayed busy until the "
                    "deadline",
                ) from None
            raise
        self.pool_wait_seconds += loop.time() - queued
        if conn_or_slot is not None:
            if conn_or_slot.usable():
                return conn_or_slot, True
            self._conns.discard(conn_or_slot)  # died on the way to us: its slot is ours
            self._opening += 1
        return await self._open(loop, deadline), False

    def _pass_on(self, conn: _Conn | None) -> None:
        """Give a connection (``None``: a promised slot) to the oldest waiter, else keep it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        if conn is None:
            self._opening -= 1
        else:
            conn.idle = True
            self._idle.append(conn)

    def _grant_slots(self) -> None:
        """Promise each free slot to the oldest waiter (it opens a connection in it)."""
        while self._waiters and self.open_connections < self._limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._opening += 1
                waiter.set_result(None)

    async def _open(self, loop: asyncio.AbstractEventLoop, deadline: float | None) -> _Conn:
        """Open a connection in a slot already counted in ``_opening``.

        Within ``connect_timeout``, or the call's deadline if that comes first.
        """
        limit = loop.time() + self._connect_timeout
        own = deadline is None or limit < deadline
        try:
            async with asyncio.timeout_at(limit if own else deadline):
                conn = await self._connect(loop)
        except BaseException as exc:
            self._opening -= 1
            self._grant_slots()
            if isinstance(exc, TimeoutError):
                if own:
                    detail = f"{self._origin}: did not answer in {self._connect_timeout:g} s"
                    raise LeanHTTPError("connect", detail, "timeout") from None
                raise LeanHTTPError("timeout", f"connecting to {self._origin} timed out") from None
            if isinstance(exc, OSError):
                detail = f"{self._origin}: {type(exc).__name__}: {exc}"
                raise LeanHTTPError("connect", detail, _connect_kind(exc)) from exc
            raise
        self._opening -= 1
        self._conns.add(conn)
        return conn

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Conn:
        factory = partial(_Conn, self, loop)
        hostname = self._host if self._ssl is not None else None
        delay = self._eyeballs
        if delay is None:
            _, conn = await loop.create_connection(
                factory, self._host, self._port, ssl=self._ssl, server_hostname=hostname
            )
        elif self._native_eyeballs:
            _, conn = await loop.create_connection(
                factory,
                self._host,
                self._port,
                ssl=self._ssl,
                server_hostname=hostname,
                happy_eyeballs_delay=delay,
                interleave=1,
            )
        else:
            sock = await _staggered_connect(loop, self._host, self._port, delay)
            try:
                _, conn = await loop.create_connection(
                    factory, sock=sock, ssl=self._ssl, server_hostname=hostname
                )
            except BaseException:
                sock.close()
                raise
        return conn

    def _release(self, conn: _Conn) -> None:
        reusable = conn.keep and conn.complete and conn.error is None and not conn.closed
        if reusable and conn.paused and conn.transport is not None:
            conn.transport.resume_reading()  # an idle connection must notice a close
        conn.reset_message()
        if reusable and conn in self._conns:
            if self._waiters:
                self._pass_on(conn)
            else:
                conn.idle = True
                self._idle.append(conn)
        else:
            conn.close()
            self._conns.discard(conn)
            self._grant_slots()

    def _lost(self, conn: _Conn) -> None:
        """An idle connection closed: drop it (a busy one is dropped by its request)."""
        if conn.idle:
            conn.idle = False
            self._idle.remove(conn)
            self._conns.discard(conn)
            self._grant_slots()

    # -- requests
    async def _send(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes,
        total: float | None,
        streaming: bool,
    ) -> _Conn:
        loop = asyncio.get_running_loop()
        deadline = None if total is None else loop.time() + total
        data = self._head(method, target, headers, len(body)) + body
        conn, reused = await self._acquire(loop, deadline)
        while True:
            fut = conn.start(data, streaming, deadline)
            try:
                await fut
            except BaseException as exc:
                conn.keep = False
                if reused and isinstance(exc, LeanHTTPError) and exc.reason == "reset":
                    # Dead while idle (see the module docstring): once more on a new
                    # connection, in the dead one's slot.
                    conn.reset_message()
                    conn.close()
                    self._conns.discard(conn)
                    self._opening += 1
                    conn, reused = await self._open(loop, deadline), False
                    continue
                self._release(conn)
                raise
            return conn

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
        conn = await self._send(method, target, headers, body, total, False)
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

        ``total`` seconds bound the whole exchange, until the body's end.
        """
        conn = await self._send(method, target, headers, body, total, True)
        return LeanStream(self, conn)

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
