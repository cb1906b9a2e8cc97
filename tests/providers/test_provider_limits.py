"""Response limits and silence, on every provider path, against byte-exact raw servers.

A server is not trusted: huge headers, an endless body, an endless SSE line or
event must fail the call with ResponseTooLargeError without the process
holding much more than the limit; a stream that stops talking (or only sends
keep-alive comments) must end at the call's timeout, and silence mid-answer at
``ResponseLimits.read_idle_timeout``.
"""

from __future__ import annotations

import asyncio
import json
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator

import anyio
import pytest
from scripted_server import KINDS, RawServer, build, call, ok_json, read_request

from agentic_synth._exceptions import APITimeoutError, ResponseTooLargeError
from agentic_synth._spec import ResponseLimits
from agentic_synth.providers._aiohttp import SSEGuard
from agentic_synth.providers._net import TransportError

LIMITS = ResponseLimits(
    max_header_bytes=16 * 1024,
    max_headers=64,
    max_body_bytes=256 * 1024,
    max_line_bytes=64 * 1024,
    max_event_bytes=128 * 1024,
)
#: What the process may hold beyond its limits while refusing an endless answer:
#: socket buffers, aiohttp's read-ahead and the test server's own write buffer.
HEADROOM = 1536 * 1024
PIECE = b"a" * 65536

Script = Callable[[RawServer, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def traced() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def serving(script: Script) -> RawServer:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await script(server, writer)

    server = RawServer(handler)
    return server


async def huge_header(server: RawServer, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Big: ")
    await server.send_until_closed(writer, PIECE, cap=4 << 20)  # a 4 MiB header line
    writer.write(b"\r\nContent-Length: 2\r\n\r\n{}")
    await writer.drain()


async def many_headers(server: RawServer, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
    await server.send_until_closed(writer, b"".join(b"X-H%d: v\r\n" % i for i in range(5000)))


async def endless_body(server: RawServer, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")
    await server.send_until_closed(writer, b" " * 65536)


async def endless_events(server: RawServer, writer: asyncio.StreamWriter) -> None:
    # Valid, tiny keep-alive comments, forever: only the body limit stops them.
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
    await server.send_until_closed(writer, b": keep-alive\n\n" * 4096)


async def endless_line(server: RawServer, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
    writer.write(b"data: ")
    await server.send_until_closed(writer, PIECE)


async def endless_event(server: RawServer, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
    await server.send_until_closed(writer, b"data: " + b"b" * 1000 + b"\n")


async def warm_up(kind: str) -> None:
    """One good call first, so the SDK's lazy imports are not counted as buffering."""
    async with serving(late_answer(kind, 0.0)) as server:
        p = build(kind, server.url, timeout=10.0)
        try:
            await call(p, streamed=False)
        finally:
            await p.aclose()


CASES: dict[str, tuple[Script, tuple[bool, ...]]] = {
    "4MiB-header": (huge_header, (False, True)),
    "too-many-headers": (many_headers, (False, True)),
    "endless-body": (endless_body, (False,)),
    "endless-stream": (endless_events, (True,)),
    "endless-sse-line": (endless_line, (True,)),
    "endless-sse-event": (endless_event, (True,)),
}


@pytest.mark.parametrize(
    ("case", "streamed"),
    [(case, streamed) for case, (_, modes) in CASES.items() for streamed in modes],
)
@pytest.mark.parametrize("kind", KINDS)
async def test_oversized_answers_fail_without_buffering_them(
    kind: str, case: str, streamed: bool, traced: None
) -> None:
    script, _ = CASES[case]
    await warm_up(kind)
    async with serving(script) as server:
        p = build(kind, server.url, timeout=30.0, response_limits=LIMITS)
        try:
            tracemalloc.reset_peak()
            before, _ = tracemalloc.get_traced_memory()
            with anyio.fail_after(20), pytest.raises(ResponseTooLargeError) as info:
                await call(p, streamed=streamed)
            _, peak = tracemalloc.get_traced_memory()
            held = peak - before
        finally:
            await p.aclose()
    assert info.value.retryable  # the server's fault, like a broken connection
    assert held < LIMITS.max_body_bytes + HEADROOM, f"held {held} bytes"


# ----------------------------------------------------------------- silence


def sse_event(kind: str) -> bytes:
    """The first event of an answer (enough for the provider to have started)."""
    if kind == "anthropic":
        message = {**ok_json(kind), "content": [], "stop_reason": None}
        payload = {"type": "message_start", "message": message}
        return b"event: message_start\ndata: " + json.dumps(payload).encode() + b"\n\n"
    chunk = {"choices": [{"index": 0, "delta": {"content": "par"}, "finish_reason": None}]}
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def stream_then(kind: str, tail: Callable[[asyncio.StreamWriter], Awaitable[None]]) -> Script:
    async def script(server: RawServer, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
        )
        writer.write(sse_event(kind))
        await writer.drain()
        await tail(writer)

    return script


async def silent(writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(60)


async def comments_only(writer: asyncio.StreamWriter) -> None:
    # Bytes keep coming, so no read times out, but no event ever completes.
    for _ in range(1200):
        writer.write(b": keep-alive\n\n")
        await writer.drain()
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("tail", [silent, comments_only], ids=["silent", "comments-only"])
@pytest.mark.parametrize("kind", KINDS)
async def test_a_stream_that_stops_answering_ends_at_the_call_timeout(
    kind: str, tail: Callable[[asyncio.StreamWriter], Awaitable[None]]
) -> None:
    limits = ResponseLimits(read_idle_timeout=None)
    async with serving(stream_then(kind, tail)) as server:
        p = build(kind, server.url, timeout=0.4, response_limits=limits)
        try:
            # The guard only stops a hang; the call's own timeout must end it first.
            with anyio.fail_after(15), pytest.raises(APITimeoutError) as info:
                await call(p, streamed=True)
        finally:
            await p.aclose()
    assert info.value.retryable


@pytest.mark.parametrize("kind", KINDS)
async def test_read_idle_timeout_ends_silence_mid_answer(kind: str) -> None:
    limits = ResponseLimits(read_idle_timeout=0.3)
    async with serving(stream_then(kind, silent)) as server:
        p = build(kind, server.url, timeout=60.0, response_limits=limits)
        try:
            with anyio.fail_after(15), pytest.raises(APITimeoutError) as info:
                await call(p, streamed=True)
        finally:
            await p.aclose()
    assert "idle" in str(info.value)


def late_answer(kind: str, delay: float) -> Script:
    async def script(server: RawServer, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(delay)
        body = json.dumps(ok_json(kind)).encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()

    return script


@pytest.mark.parametrize("kind", KINDS)
async def test_read_idle_timeout_does_not_cut_a_slow_start(kind: str) -> None:
    # A non-streamed answer may take long to start: silence counts once it has.
    limits = ResponseLimits(read_idle_timeout=0.2)
    async with serving(late_answer(kind, 0.6)) as server:
        p = build(kind, server.url, timeout=10.0, response_limits=limits)
        try:
            (out,) = await call(p, streamed=False)
        finally:
            await p.aclose()
    assert out.text == "ok"


# ----------------------------------------------------------------- the SDK path's SSE guard


def feed(guard: SSEGuard, wire: bytes, cut: int) -> None:
    for start in range(0, len(wire), cut):
        guard.check(wire[start : start + cut])


@pytest.mark.parametrize("cut", [1, 2, 3, 7, 1000])
def test_sse_guard_allows_what_fits_however_the_bytes_arrive(cut: int) -> None:
    # Lines of exactly the limit, events of exactly the limit, every line ending.
    line = b"data: " + b"x" * 10  # 16 bytes
    event = line + b"\r\n" + line + b"\n"  # 32 bytes of lines
    wire = (event + b"\r\n" + event + b"\r\r" + event + b"\n\n") * 3
    feed(SSEGuard(max_line_bytes=16, max_event_bytes=32), wire, cut)


@pytest.mark.parametrize("cut", [1, 5, 1000])
def test_sse_guard_refuses_a_line_or_an_event_one_byte_over(cut: int) -> None:
    with pytest.raises(TransportError, match="line over 16"):
        feed(SSEGuard(max_line_bytes=16, max_event_bytes=1000), b"data: " + b"x" * 11, cut)
    with pytest.raises(TransportError, match="event over 33"):
        feed(SSEGuard(max_line_bytes=16, max_event_bytes=33), b"data: 1\ndata: 2\n" * 3, cut)
