"""One origin over aiohttp, bounded: the OpenAI provider's proxy transport and the
Anthropic SDK's transport.

What aiohttp does not bound by itself is bounded here, per request and O(1):

- a pool of ``max_connections`` slots of our own in front of aiohttp's, so that
  waiting for a connection (our backlog) is told apart from a slow server
  (``reason="pool_timeout"``);
- the status line and header lines (``max_line_size``/``max_field_size``) and
  their number (``max_headers``) through the session's parser options;
- the body: counted as it is read, past ``max_body_bytes`` the read fails;
- silence: ``read_idle_timeout`` armed on the connection once the headers are
  in (not before: a non-streamed answer may take minutes to start);
- with ``sse=True``, the length of a line and of an event of a
  ``text/event-stream`` body, for consumers whose SSE parser has no limits (the
  Anthropic SDK's).

Redirects are never followed (a key must not travel to another host). Every
aiohttp failure comes out as :class:`~._net.TransportError`.

Opening a connection has ``connect_timeout`` seconds (default
:data:`~._net.CONNECT_TIMEOUT`) when the deadline is further away; past them the
failure is ``"connect"`` of kind ``"timeout"`` (``"proxy"`` through a proxy), an
unreachable host rather than a slow answer.

A request whose kept-alive connection turns out dead before any byte of the
answer is sent again, once, on a new connection, as the lean client does (its
module docstring says why that is safe for a POST); aiohttp itself resends only
idempotent methods, and on any connection. Which connection a request got is
known from the connector (:class:`_Connector`).
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import errno
import functools
import math
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import yarl
from aiohttp import http_exceptions
from aiohttp.client_proto import ResponseHandler
from aiohttp.client_reqrep import ConnectionKey
from aiohttp.connector import Connection
from aiohttp.tracing import Trace

from .._spec import ResponseLimits
from . import _net
from ._net import Proxy, TransportError

__all__ = ["AiohttpOrigin", "AiohttpResponse", "SSEGuard", "to_transport_error"]


def to_transport_error(exc: BaseException) -> tuple[TransportError, BaseException | None]:
    """An aiohttp failure in the lean client's terms, and the exception to chain it to.

    aiohttp's ``ClientResponseError`` keeps the request headers (the key among
    them) in its repr, so it is never chained: its own cause is, when it has one.
    """
    cause: BaseException | None = exc
    if isinstance(exc, aiohttp.ClientResponseError):
        cause = exc.__cause__
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        detail = f"the proxy answered {exc.status} {exc.message}".strip()
        return TransportError("connect", detail, kind="proxy"), None
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return TransportError("connect", "cannot reach the proxy", kind="proxy"), cause
    if isinstance(exc, aiohttp.ClientConnectorError):
        return TransportError("connect", str(exc)), cause
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return TransportError("timeout", "connect timed out"), cause
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return TransportError("idle_timeout", "no bytes for too long"), cause
    if isinstance(exc, TimeoutError):
        return TransportError("timeout", "no complete answer before the deadline"), cause
    if isinstance(exc, aiohttp.ClientResponseError):
        message = str(exc.message)
        if _header_limit_hit(exc) or "Too many headers" in message:
            return TransportError("too_large", f"response headers: {message[:120]}"), cause
        return TransportError("malformed", f"bad HTTP response: {message[:200]}"), cause
    if isinstance(exc, aiohttp.ClientPayloadError):
        return TransportError("truncated", f"body cut off: {exc}"), cause
    if isinstance(exc, aiohttp.ServerDisconnectedError | ConnectionResetError):
        return TransportError("reset", "the server closed the connection"), cause
    return TransportError("reset", f"{type(exc).__name__}: {exc}".rstrip(": ")), cause


#: How a connection dies under a request besides an orderly close (ServerDisconnectedError).
_DROPPED = frozenset({errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE})


def _dropped(exc: BaseException) -> bool:
    """Whether a request failed because the connection it was sent on died."""
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return True
    if isinstance(exc, aiohttp.ClientConnectorError):
        return False  # never connected: nothing was sent
    return isinstance(exc, ConnectionError) or (isinstance(exc, OSError) and exc.errno in _DROPPED)


class _Handler(ResponseHandler):
    """aiohttp's connection protocol, noting whether any byte came since :attr:`heard` was
    last cleared: a reset after part of a head, or after an interim (1xx) answer,
    reaches the request as the same error as one before any byte."""

    heard = False

    def data_received(self, data: bytes) -> None:
        if data:
            self.heard = True
        super().data_received(data)


def _new_handler(loop: asyncio.AbstractEventLoop) -> ResponseHandler:
    return _Handler(loop)


class _Attempt:
    """One send of a request, as the connector saw it."""

    __slots__ = ("fresh", "pooled")

    def __init__(self) -> None:
        #: Asked for a new connection, whatever the pool holds.
        self.fresh = False
        #: The connection it got from the pool (served an earlier request), if it did.
        self.pooled: _Handler | None = None

    def resendable(self, exc: BaseException) -> bool:
        """Whether ``exc`` is a pooled connection found dead before any of an answer."""
        pooled = self.pooled
        return pooled is not None and not pooled.heard and _dropped(exc)


#: The send in progress in this task (aiohttp connects in the caller's task).
_ATTEMPT: contextvars.ContextVar[_Attempt | None] = contextvars.ContextVar(
    "agentic_synth_aiohttp_attempt", default=None
)


class _Connector(aiohttp.TCPConnector):
    """A connector that tells the current :class:`_Attempt` which connection it got from
    the pool, and opens a new one when it asks for that.

    Two of aiohttp's (3.14) internals, as no public hook can refuse a pooled connection
    or see bytes before a head is whole: ``_get`` hands out pooled connections and
    ``_factory`` makes the protocols. Should either change, no request is resent (the
    tests of the resend fail); nothing else does.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._factory = functools.partial(_new_handler, self._loop)

    async def _get(self, key: ConnectionKey, traces: list[Trace]) -> Connection | None:
        attempt = _ATTEMPT.get()
        if attempt is not None and attempt.fresh:
            return None
        conn = await super()._get(key, traces)
        if conn is not None and attempt is not None:
            proto = conn.protocol
            if isinstance(proto, _Handler):
                proto.heard = False  # what came before belonged to earlier answers
                attempt.pooled = proto
        return conn


def _header_limit_hit(exc: BaseException) -> bool:
    """Whether aiohttp's parser refused a too long status or header line."""
    item: BaseException | None = exc
    for _ in range(4):
        if item is None:
            return False
        if isinstance(item, http_exceptions.LineTooLong):
            return True
        item = item.__cause__
    return False


class SSEGuard:
    """Bounds the line and event sizes of an event stream without parsing it.

    Counts the bytes of the current line and of the lines since the last blank
    line (an event's end), line ends left out so the count does not depend on
    how the bytes were cut. An event's size counts whole lines (field names
    included), a little stricter than the data-only count of
    :class:`~agentic_synth.streaming.SSEDecoder`.
    """

    __slots__ = ("_cr", "_event", "_line", "_max_event", "_max_line")

    def __init__(self, max_line_bytes: int, max_event_bytes: int) -> None:
        self._max_line = max_line_bytes
        self._max_event = max_event_bytes
        self._line = 0
        self._event = 0
        self._cr = False

    def check(self, chunk: bytes) -> None:
        """Raise :class:`TransportError` ``too_large`` if ``chunk`` breaks a limit."""
        if self._cr and chunk[:1] == b"\n":
            chunk = chunk[1:]  # the LF of a CRLF split across chunks
        if not chunk:
            return
        self._cr = chunk[-1] == 13
        for piece in chunk.splitlines(keepends=True):
            if piece[-1] in (10, 13):
                size = len(piece.rstrip(b"\r\n"))
                line = self._line + size
                self._line = 0
                if line == 0:
                    self._event = 0  # a blank line ends the event
                    continue
            else:
                size = len(piece)
                line = self._line = self._line + size
            if line > self._max_line:
                raise TransportError(
                    "too_large", f"an event-stream line over {self._max_line} bytes"
                )
            self._event += size
            if self._event > self._max_event:
                raise TransportError(
                    "too_large", f"an event-stream event over {self._max_event} bytes"
                )


class AiohttpResponse:
    """An answer whose body is read (bounded) as it arrives; :meth:`close` it (idempotent).

    Read to its end, the connection goes back to the pool; closed before, it is dropped.
    """

    __slots__ = ("_done", "_guard", "_max_body", "_received", "_resp", "_slots")

    def __init__(
        self, origin: AiohttpOrigin, resp: aiohttp.ClientResponse, guard: SSEGuard | None
    ) -> None:
        # The pool slot this exchange holds (a new loop's session gets new slots).
        self._slots = origin.slots
        self._resp = resp
        self._guard = guard
        self._max_body = origin.limits.max_body_bytes
        self._received = 0
        self._done = False

    @property
    def status(self) -> int:
        return self._resp.status

    @property
    def reason(self) -> str | None:
        return self._resp.reason

    @property
    def headers(self) -> Mapping[str, str]:
        return self._resp.headers

    @property
    def raw_headers(self) -> tuple[tuple[bytes, bytes], ...]:
        return self._resp.raw_headers

    def at_eof(self) -> bool:
        return self._resp.content.at_eof()

    async def chunks(self) -> AsyncIterator[bytes]:
        """Body pieces as they arrive; raises :class:`TransportError` on any failure."""
        content = self._resp.content
        guard = self._guard
        while True:
            try:
                chunk = await content.readany()
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                error, cause = to_transport_error(exc)
                self.close()
                raise error from cause
            if not chunk:
                return
            self._received += len(chunk)
            if self._received > self._max_body:
                self.close()
                raise TransportError(
                    "too_large", f"a body over {self._max_body} bytes (max_body_bytes)"
                )
            if guard is not None:
                try:
                    guard.check(chunk)
                except TransportError:
                    self.close()
                    raise
            yield chunk

    async def read(self) -> bytes:
        """The rest of the body."""
        return b"".join([chunk async for chunk in self.chunks()])

    def close(self) -> None:
        if self._done:
            return
        self._done = True
        resp = self._resp
        if resp.content.at_eof():
            resp.release()
        else:
            resp.close()
        self._slots.release()


class AiohttpOrigin:
    """Requests to one origin through one aiohttp session per event loop."""

    def __init__(
        self,
        *,
        max_connections: int,
        ssl_context: ssl.SSLContext | None,
        limits: ResponseLimits,
        proxy: Proxy | None,
        sse_guard: bool = False,
        skip_auto_headers: tuple[str, ...] = ("Accept-Encoding",),
        connect_timeout: float | None = None,
    ) -> None:
        if connect_timeout is None:
            connect_timeout = _net.CONNECT_TIMEOUT
        if not 0 < connect_timeout < math.inf:
            raise ValueError(f"connect_timeout must be > 0 seconds, got {connect_timeout!r}")
        #: Seconds to open a connection (DNS, TCP, proxy, TLS), when the deadline allows.
        self.connect_timeout = connect_timeout
        self.limits = limits
        self.proxy = proxy
        self._proxy_url = None if proxy is None else proxy.url
        self._proxy_headers = None
        if proxy is not None and proxy.auth is not None:
            # Basic credentials from the proxy URL (aiohttp's proxy_auth is deprecated).
            token = base64.b64encode(":".join(proxy.auth).encode("utf-8")).decode("ascii")
            self._proxy_headers = {"Proxy-Authorization": f"Basic {token}"}
        self._max_connections = max_connections
        self._ssl: ssl.SSLContext | bool = True if ssl_context is None else ssl_context
        self._sse_guard = sse_guard
        self._skip = skip_auto_headers
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.slots = asyncio.Semaphore(max_connections)

    def _client(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._session
        if session is None or session.closed or self._loop is not loop:
            # A session (and our slots) belong to the loop they were made in.
            limits = self.limits
            connector = _Connector(
                limit=self._max_connections,
                ttl_dns_cache=300,
                keepalive_timeout=30,
                ssl=self._ssl,
            )
            session = aiohttp.ClientSession(
                connector=connector,
                # API gateways set cookies we never need: don't parse or store them.
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=self._skip,
                max_line_size=limits.max_header_bytes,
                max_field_size=limits.max_header_bytes,
                max_headers=limits.max_headers,
                trust_env=False,
            )
            self._session, self._loop = session, loop
            self.slots = asyncio.Semaphore(self._max_connections)
        return session

    async def _slot(self, deadline: float | None) -> None:
        slots = self.slots
        if not slots.locked():
            await slots.acquire()
            return
        timeout = None if deadline is None else deadline - time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                await slots.acquire()
        except TimeoutError:
            raise TransportError(
                "pool_timeout", f"all {self._max_connections} connections stayed busy"
            ) from None

    async def request(
        self,
        method: str,
        url: yarl.URL | str,
        headers: Any,
        body: bytes | None,
        *,
        deadline: float | None,
        connect_timeout: float | None = None,
    ) -> AiohttpResponse:
        """Send one request; return once the answer's headers are in.

        ``deadline`` (``time.monotonic()`` seconds) bounds all of it, body included;
        ``connect_timeout`` (the SDK's) may shorten the origin's own. Sent a second
        time, on a new connection, only if a pooled connection died under it before
        any of an answer (see the module docstring).
        """
        session = self._client()
        await self._slot(deadline)
        if connect_timeout is None or connect_timeout > self.connect_timeout:
            connect_timeout = self.connect_timeout
        attempt = _Attempt()
        token = _ATTEMPT.set(attempt)
        try:
            while True:
                total = None if deadline is None else deadline - time.monotonic()
                if total is not None and total <= 0:
                    raise TransportError("timeout", "the deadline passed before sending")
                # The connect timeout only where it ends first: else the deadline says it.
                connect = (
                    None if total is not None and total <= connect_timeout else connect_timeout
                )
                timeout = aiohttp.ClientTimeout(total=total, connect=connect)
                try:
                    resp = await session.request(
                        method,
                        url,
                        data=body,
                        headers=headers,
                        timeout=timeout,
                        proxy=self._proxy_url,
                        proxy_headers=self._proxy_headers,
                        allow_redirects=False,
                    )
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    if attempt.resendable(exc) and (
                        deadline is None or deadline > time.monotonic()
                    ):
                        attempt.fresh, attempt.pooled = True, None
                        continue
                    if connect is not None and isinstance(exc, aiohttp.ConnectionTimeoutError):
                        raise self._no_answer(connect) from exc
                    error, cause = to_transport_error(exc)
                    raise error from cause
                break
        except BaseException:
            self.slots.release()
            raise
        finally:
            _ATTEMPT.reset(token)
        idle = self.limits.read_idle_timeout
        conn = resp.connection
        if (
            idle is not None
            and conn is not None
            and conn.protocol is not None
            and not resp.content.is_eof()
        ):
            # Silence counts from now: the answer has started. (Not armed when the
            # body is already in: the timer would outlive the exchange.)
            conn.protocol.read_timeout = idle
            conn.protocol.start_timeout()
        guard = None
        if self._sse_guard:
            content_type = resp.headers.get("content-type", "")
            if content_type.startswith("text/event-stream"):
                guard = SSEGuard(self.limits.max_line_bytes, self.limits.max_event_bytes)
        return AiohttpResponse(self, resp, guard)

    def _no_answer(self, seconds: float) -> TransportError:
        """The connect timeout ran out with no connection made."""
        if self.proxy is not None:
            # The proxy, or the origin it tunnels to: it does not tell which.
            detail = f"no connection through it in {seconds:g} s (no answer)"
            return TransportError("connect", detail, kind="proxy")
        return TransportError("connect", f"did not answer in {seconds:g} s", kind="timeout")

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()
