"""The Anthropic SDK's HTTP transport: :class:`~._aiohttp.AiohttpOrigin` behind httpx2's API.

The SDK's own aiohttp transport (``DefaultAioHttpClient``) has no response
limits, no deadline for a whole stream, follows the environment's proxies its
own way and maps every failure to a bare "Connection error.". This one gives
the SDK what the OpenAI provider has: bounded headers, bodies, SSE lines and
events, a read-idle timeout, the call's deadline over the whole exchange (a
stream that sends headers then nothing ends at the deadline), TLS from the
model's ``verify``, the same proxy rules, and no redirects.

Failures are raised as :class:`~._net.TransportError`; the SDK wraps those
raised while sending in its ``APIConnectionError`` (ours stays the
``__cause__``) and lets those raised while reading the body through, and the
provider maps either back with :func:`find_transport_error`.

The call's deadline reaches the transport through :data:`DEADLINE`, a context
variable the provider sets around the SDK call: the SDK passes only per-phase
timeouts down, never a total.
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator

import httpx2

from ._aiohttp import AiohttpOrigin, AiohttpResponse
from ._net import TransportError

__all__ = ["DEADLINE", "SDKTransport", "find_transport_error"]

#: ``time.monotonic()`` by which the current call must be done (``None``: no deadline).
DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "agentic_synth_deadline", default=None
)

#: Response headers that describe an encoding already undone by aiohttp.
_DECODED = frozenset({b"content-encoding", b"content-length", b"transfer-encoding"})


def find_transport_error(exc: BaseException) -> TransportError | None:
    """The :class:`TransportError` behind an SDK exception, if one is."""
    seen = 0
    item: BaseException | None = exc
    while item is not None and seen < 8:
        if isinstance(item, TransportError):
            return item
        # The SDK chains what it wraps (``raise ... from err``); an implicit context
        # may be an older, unrelated failure, so it counts only when not suppressed.
        item = item.__cause__ or (None if item.__suppress_context__ else item.__context__)
        seen += 1
    return None


class _Body(httpx2.AsyncByteStream):
    """A bounded aiohttp body as httpx2 reads it; closing it drops an unfinished connection."""

    def __init__(self, resp: AiohttpResponse) -> None:
        self._resp = resp

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._resp.chunks():
                yield chunk
        finally:
            # At the end of the body this hands the connection back; otherwise drops it.
            self._resp.close()

    async def aclose(self) -> None:
        self._resp.close()


class SDKTransport(httpx2.AsyncBaseTransport):
    """httpx2 transport over one :class:`AiohttpOrigin`."""

    def __init__(self, origin: AiohttpOrigin) -> None:
        self._origin = origin

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        timeouts = request.extensions.get("timeout") or {}
        headers = [
            (name, value)
            for name, value in request.headers.multi_items()
            if name.lower() != "accept-encoding"
        ]
        # Identity bodies: nothing to inflate beyond the limits, no CPU spent on it.
        headers.append(("Accept-Encoding", "identity"))
        body = await request.aread()
        resp = await self._origin.request(
            request.method,
            str(request.url),
            headers,
            body or None,
            deadline=DEADLINE.get(),
            connect_timeout=timeouts.get("connect"),
        )
        raw = [(k, v) for k, v in resp.raw_headers if k.lower() not in _DECODED]
        extensions: dict[str, object] = {"http_version": b"HTTP/1.1"}
        if resp.reason:
            extensions["reason_phrase"] = resp.reason.encode("latin-1", "replace")
        return httpx2.Response(
            status_code=resp.status,
            headers=raw,
            stream=_Body(resp),
            request=request,
            extensions=extensions,
        )

    async def aclose(self) -> None:
        await self._origin.aclose()
