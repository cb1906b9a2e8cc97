"""HTTP for the batch backends: result files read line by line, each line bounded.

A 100,000-item results file can be gigabytes, far over
``ResponseLimits.max_body_bytes``, and must never be held whole: the batch
backends read it through their own connection pool whose body limit is
:data:`MAX_RESULTS_BYTES`, while each JSONL line (one item's answer, so the size
of one response body) is held to the model's ``max_body_bytes``. A server that
sends a longer line, or no line end at all, fails the read with ``too_large``.

The Anthropic SDK fetches results from the ``results_url`` the server names, with
the key in its headers: :class:`BatchSDKTransport` refuses any URL off the base
URL's origin, so a hostile server cannot send the key elsewhere.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2

from ._net import TransportError
from ._sdk_transport import SDKTransport

__all__ = ["MAX_RESULTS_BYTES", "BatchSDKTransport", "LineGuard", "bounded_lines"]

#: Bytes of one results / output / error file read (the lines are what is held).
MAX_RESULTS_BYTES = 64 * 1024**3


class LineGuard:
    """Counts the bytes since the last line end; past ``max_line`` it raises."""

    __slots__ = ("_line", "_max")

    def __init__(self, max_line: int) -> None:
        self._max = max_line
        self._line = 0

    def check(self, chunk: bytes) -> None:
        parts = chunk.split(b"\n")
        longest = self._line + len(parts[0])
        if len(parts) > 1:
            longest = max(longest, *(len(p) for p in parts[1:]))
            self._line = len(parts[-1])
        else:
            self._line = longest
        if longest > self._max:
            self._fail()

    def _fail(self) -> None:
        raise TransportError("too_large", f"a result line over {self._max} bytes (max_body_bytes)")


async def bounded_lines(chunks: AsyncIterator[bytes], max_line: int) -> AsyncIterator[bytes]:
    """The non-empty lines of a JSONL body, each at most ``max_line`` bytes."""
    guard = LineGuard(max_line)
    buffer = b""
    async for chunk in chunks:
        guard.check(chunk)
        buffer += chunk
        if b"\n" not in chunk:
            continue
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.strip():
                yield line
    if buffer.strip():
        yield buffer


class _GuardedBody(httpx2.AsyncByteStream):
    def __init__(self, inner: httpx2.AsyncByteStream, max_line: int) -> None:
        self._inner = inner
        self._guard = LineGuard(max_line)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            self._guard.check(chunk)
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class BatchSDKTransport(httpx2.AsyncBaseTransport):
    """:class:`SDKTransport` for the batches client: same-origin only, JSONL lines bounded."""

    def __init__(self, inner: SDKTransport, *, origin: httpx2.URL, max_line: int) -> None:
        self._inner = inner
        self._origin = (origin.scheme, origin.host, origin.port)
        self._max_line = max_line

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        url = request.url
        if (url.scheme, url.host, url.port) != self._origin:
            raise TransportError(
                "malformed",
                f"the server sent a results URL on another origin ({url.scheme}://{url.host}); "
                "not followed, the key would go along",
            )
        response = await self._inner.handle_async_request(request)
        stream = response.stream
        if not isinstance(stream, httpx2.AsyncByteStream):  # pragma: no cover - always async
            return response
        return httpx2.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_GuardedBody(stream, self._max_line),
            request=request,
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()
