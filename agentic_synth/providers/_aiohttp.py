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
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import yarl
from aiohttp import http_exceptions

from .._spec import ResponseLimits
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
    ) -> None:
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
            connector = aiohttp.TCPConnector(
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

        ``deadline`` (``time.monotonic()`` seconds) bounds all of it, body included.
        """
        session = self._client()
        await self._slot(deadline)
        try:
            total = None if deadline is None else deadline - time.monotonic()
            if total is not None and total <= 0:
                raise TransportError("timeout", "the deadline passed before sending")
            timeout = aiohttp.ClientTimeout(total=total, sock_connect=connect_timeout)
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
                error, cause = to_transport_error(exc)
                raise error from cause
        except BaseException:
            self.slots.release()
            raise
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

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()
