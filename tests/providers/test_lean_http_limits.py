"""The lean client against hostile or odd servers: size limits, interim and 3xx answers,
bytes after an answer, and the read-idle timeout."""

from __future__ import annotations

import asyncio
from contextlib import nullcontext

import pytest
from test_lean_http import Handler, Server, client_for, ok, serving, wait_for

from agentic_synth._spec import ResponseLimits
from agentic_synth.providers._lean_http import LeanHTTPError

MIB = 1 << 20


class Flood:
    """A handler that answers with ``head`` and then ``filler`` forever, counting bytes sent."""

    def __init__(self, head: bytes, filler: bytes = b"x" * 65536) -> None:
        self.head = head
        self.filler = filler
        self.sent = 0

    async def __call__(self, r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(r)
        w.write(self.head)
        while True:
            w.write(self.filler)
            self.sent += len(self.filler)
            await w.drain()


def once(wire: bytes) -> Handler:
    """A handler answering every request on its connection with ``wire``, in one write."""

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        while await s.read_request(r) is not None:
            w.write(wire)
            await w.drain()

    return handler


#: Kernel socket buffers on loopback hold a few MiB that the server counts as sent.
SOCKET_SLACK = 16 * MIB


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize(
    "framing", [b"Content-Length: 1000000000000\r\n", b""], ids=["content-length", "until-close"]
)
async def test_endless_body_stops_at_the_limit(streamed: bool, framing: bytes) -> None:
    """Content-Length and read-until-close bodies, whole or streamed: the error comes after
    about the limit, the connection is closed, the process does not grow with the body."""
    flood = Flood(b"HTTP/1.1 200 OK\r\n" + framing + b"\r\n")
    async with serving(flood) as server:
        client = client_for(server, limits=ResponseLimits(max_body_bytes=MIB))
        try:
            with pytest.raises(LeanHTTPError) as info:
                if streamed:
                    stream = await client.stream("GET", "/", {})
                    try:
                        async for _ in stream.chunks():
                            pass
                    finally:
                        stream.close()
                else:
                    await client.request("GET", "/", {})
            assert info.value.reason == "too_large"
            assert f"body over {MIB} bytes" in str(info.value)
            assert client.open_connections == 0
            await wait_for(lambda: server.open == 0)  # the server saw us hang up
        finally:
            await client.aclose()
    assert MIB <= flood.sent < MIB + SOCKET_SLACK


async def test_endless_chunked_body_stops_at_the_limit() -> None:
    flood = Flood(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"1000\r\n" + b"c" * 4096 + b"\r\n",
    )
    async with serving(flood) as server:
        client = client_for(server, limits=ResponseLimits(max_body_bytes=MIB))
        try:
            with pytest.raises(LeanHTTPError, match="too_large"):
                await client.request("GET", "/", {})
        finally:
            await client.aclose()
    assert MIB <= flood.sent < MIB + SOCKET_SLACK


async def test_endless_header_stops_at_the_limit() -> None:
    flood = Flood(b"HTTP/1.1 200 OK\r\nX-Big: ", b"a" * 65536)
    async with serving(flood) as server:
        client = client_for(server)  # default limit: 64 KiB of head
        try:
            with pytest.raises(LeanHTTPError) as info:
                await client.stream("GET", "/", {})
            assert info.value.reason == "too_large" and "head over 65536 bytes" in str(info.value)
            await wait_for(lambda: server.open == 0)
        finally:
            await client.aclose()
    assert flood.sent < SOCKET_SLACK


async def test_endless_interim_answers_count_against_the_head_limit() -> None:
    flood = Flood(b"", b"HTTP/1.1 100 Continue\r\n\r\n" * 1000)
    async with serving(flood) as server:
        client = client_for(server, limits=ResponseLimits(max_header_bytes=4096))
        try:
            with pytest.raises(LeanHTTPError, match="too_large"):
                await client.request("GET", "/", {})
        finally:
            await client.aclose()


async def test_endless_trailer_is_bounded_by_the_wire_budget() -> None:
    """httptools buffers a trailer field itself: only the bytes after the head can bound it."""
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\nX-Trailer: "
    flood = Flood(head, b"t" * 4096)
    limits = ResponseLimits(max_header_bytes=4096, max_body_bytes=65536)
    async with serving(flood) as server:
        client = client_for(server, limits=limits)
        try:
            with pytest.raises(LeanHTTPError) as info:
                await client.request("GET", "/", {})
            assert info.value.reason == "too_large" and "after the head" in str(info.value)
        finally:
            await client.aclose()
    assert flood.sent < SOCKET_SLACK


HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Pad: " + b"p" * 100 + b"\r\n\r\n"


@pytest.mark.parametrize("split", [None, 1, 7, 120])
async def test_head_limit_is_exact(split: int | None) -> None:
    """A head of exactly ``max_header_bytes`` (blank line included) passes, one byte less fails;
    whether the head arrives with the body or in pieces."""
    wire = HEAD + b"hello"

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        while await s.read_request(r) is not None:
            if split is None:
                w.write(wire)
            else:
                for i in range(0, len(wire), split):
                    w.write(wire[i : i + split])
                    await w.drain()
            await w.drain()

    async with serving(handler) as server:
        exact = client_for(server, limits=ResponseLimits(max_header_bytes=len(HEAD)))
        short = client_for(server, limits=ResponseLimits(max_header_bytes=len(HEAD) - 1))
        try:
            for _ in range(2):  # and the kept-alive connection parses the next one
                out = await exact.request("GET", "/", {})
                assert (out.status, out.body, len(out.headers["x-pad"])) == (200, b"hello", 100)
            with pytest.raises(LeanHTTPError, match="too_large"):
                await short.request("GET", "/", {})
        finally:
            await exact.aclose()
            await short.aclose()
    assert server.connections == 2


async def test_header_count_limit() -> None:
    def answer(fields: int) -> bytes:
        return b"HTTP/1.1 200 OK\r\n" + b"X-N: 1\r\n" * (fields - 1) + b"Content-Length: 0\r\n\r\n"

    async with serving(once(answer(256))) as server:
        client = client_for(server)
        try:
            assert (await client.request("GET", "/", {})).headers["x-n"].count("1") == 255
        finally:
            await client.aclose()
    async with serving(once(answer(257))) as server:
        client = client_for(server)
        try:
            with pytest.raises(LeanHTTPError) as info:
                await client.request("GET", "/", {})
            assert info.value.reason == "too_large" and "256 header fields" in str(info.value)
        finally:
            await client.aclose()


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize("chunked", [False, True])
async def test_body_limit_is_exact(streamed: bool, chunked: bool) -> None:
    def answer(size: int) -> bytes:
        if chunked:
            half = size // 2
            return (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                + b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n"
                % (half, b"b" * half, size - half, b"b" * (size - half))
            )
        return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"b" * size

    limits = ResponseLimits(max_body_bytes=1000)
    for size in (1000, 1001):
        async with serving(once(answer(size))) as server:
            client = client_for(server, limits=limits)
            try:
                with pytest.raises(LeanHTTPError) if size > 1000 else nullcontext() as info:
                    if streamed:
                        stream = await client.stream("GET", "/", {})
                        body = await stream.read()
                        stream.close()
                    else:
                        body = (await client.request("GET", "/", {})).body
                    assert body == b"b" * size
                assert info is None or info.value.reason == "too_large"
            finally:
                await client.aclose()


@pytest.mark.parametrize("streamed", [False, True])
async def test_interim_answers_are_skipped(streamed: bool) -> None:
    """100 Continue and 103 Early Hints (headers and all) precede the final answer, in one
    write or byte by byte; the caller sees only the final one, and the connection stays usable."""
    wire = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </app.js>; rel=preload\r\n\r\n"
        b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\nX-Final: yes\r\n\r\ndone"
    )

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        while await s.read_request(r) is not None:
            step = len(wire) if len(s.requests) == 1 else 1
            for i in range(0, len(wire), step):
                w.write(wire[i : i + step])
                await w.drain()

    async with serving(handler) as server:
        client = client_for(server)
        try:
            for _ in range(2):
                if streamed:
                    stream = await client.stream("POST", "/", {}, b"{}")
                    status, reason, headers = stream.status, stream.reason, stream.headers
                    body = await stream.read()
                    stream.close()
                else:
                    status, headers, body, reason = await client.request("POST", "/", {}, b"{}")
                assert (status, reason, body) == (201, "Created", b"done")
                assert headers == {"content-length": "4", "x-final": "yes"}
        finally:
            await client.aclose()
    assert server.connections == 1


async def test_unasked_101_is_malformed() -> None:
    wire = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"
    async with serving(once(wire)) as server:
        client = client_for(server)
        try:
            with pytest.raises(LeanHTTPError, match="malformed"):
                await client.request("GET", "/", {})
        finally:
            await client.aclose()


@pytest.mark.parametrize(
    ("status", "location"),
    [(301, b"/v2/x"), (302, b"http://elsewhere.invalid/x"), (307, b"/v2/x"), (308, b"/v2/x")],
)
async def test_redirects_are_returned_not_followed(status: int, location: bytes) -> None:
    wire = b"HTTP/1.1 %d Moved\r\nLocation: %s\r\nContent-Length: 5\r\n\r\nmoved"
    async with serving(once(wire % (status, location))) as server:
        client = client_for(server)
        try:
            out = await client.request("POST", "/v1/x", {}, b"{}")
            assert out.status == status and out.body == b"moved"
            assert out.headers["location"] == location.decode()
            stream = await client.stream("POST", "/v1/x", {}, b"{}")
            assert stream.status == status and stream.headers["location"] == location.decode()
            assert await stream.read() == b"moved"
            stream.close()
        finally:
            await client.aclose()
    assert len(server.requests) == 2 and server.connections == 1


async def test_bytes_after_the_answer_neither_corrupt_it_nor_are_reused() -> None:
    """A second, unasked answer glued to the first: the first is returned intact and the
    connection is dropped instead of being read as the next request's answer."""
    glued = ok(b"first") + b"HTTP/1.1 500 Oops\r\nX-Evil: 1\r\nContent-Length: 4\r\n\r\nevil"
    async with serving(once(glued)) as server:
        client = client_for(server)
        try:
            for _ in range(2):
                out = await client.request("POST", "/", {}, b"")
                assert (out.status, out.body) == (200, b"first") and "x-evil" not in out.headers
        finally:
            await client.aclose()
    assert server.connections == 2


async def test_trailers_are_not_mixed_into_the_headers() -> None:
    wire = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Request-Id: r1\r\n\r\n"
        b"2\r\nhi\r\n0\r\nX-Request-Id: forged\r\n\r\n"
    )
    async with serving(once(wire)) as server:
        client = client_for(server)
        try:
            out = await client.request("GET", "/", {})
            assert out.body == b"hi" and out.headers["x-request-id"] == "r1"
        finally:
            await client.aclose()


IDLE = ResponseLimits(read_idle_timeout=0.2)


async def test_read_idle_timeout_does_not_apply_before_the_answer_starts() -> None:
    """A non-streamed answer may take long to start (the whole generation happens
    first): only the deadline bounds the wait for the head; silence counts after it."""

    async def late(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(r)
        await asyncio.sleep(0.6)  # three idle limits of silence before the head
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await w.drain()
        await r.read()

    async def silent(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(r)
        await r.read()  # until the client hangs up

    async with serving(late) as server:
        client = client_for(server, limits=IDLE)
        try:
            answer = await client.request("POST", "/", {}, b"", total=30)
            assert (answer.status, answer.body) == (200, b"ok")
        finally:
            await client.aclose()
    async with serving(silent) as server:
        client = client_for(server, limits=IDLE)
        try:
            with pytest.raises(LeanHTTPError) as info:
                await client.request("POST", "/", {}, b"", total=0.5)
            assert info.value.reason == "timeout" and "deadline" in str(info.value)
            await wait_for(lambda: server.open == 0)
            assert client.open_connections == 0
        finally:
            await client.aclose()


@pytest.mark.parametrize("streamed", [False, True])
async def test_read_idle_timeout_mid_body(streamed: bool) -> None:
    async def stalls(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await w.drain()
        await r.read()

    async with serving(stalls) as server:
        client = client_for(server, limits=IDLE)
        try:
            with pytest.raises(LeanHTTPError) as info:
                if streamed:
                    stream = await client.stream("POST", "/", {}, b"")
                    pieces = stream.chunks()
                    assert await anext(pieces) == b"first"
                    await anext(pieces)
                else:
                    await client.request("POST", "/", {}, b"")
            assert info.value.reason == "timeout" and "idle" in str(info.value)
            await wait_for(lambda: server.open == 0)
        finally:
            await client.aclose()


async def test_a_steady_trickle_is_not_idle() -> None:
    """Bytes every 20 ms for longer than the idle timeout: the one timer re-arms from the
    last byte instead of firing."""

    async def trickle(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n")
        for _ in range(40):
            await asyncio.sleep(0.02)
            w.write(b"t")
            await w.drain()

    async with serving(trickle) as server:
        client = client_for(server, limits=ResponseLimits(read_idle_timeout=0.5))
        try:
            assert (await client.request("POST", "/", {}, b"", total=30)).body == b"t" * 40
        finally:
            await client.aclose()


async def test_a_slow_reader_is_not_an_idle_server() -> None:
    """A streamed body past the read-ahead pauses the socket; the server going quiet then
    is our doing, so the idle timeout does not fire while the reader lags."""
    async with serving(once(ok(b"z" * MIB))) as server:
        client = client_for(server, limits=IDLE)
        try:
            stream = await client.stream("POST", "/", {}, b"")
            await wait_for(lambda: stream._conn.paused)
            await asyncio.sleep(0.6)  # three idle timeouts
            assert await stream.read() == b"z" * MIB
            stream.close()
            assert (await client.request("POST", "/", {}, b"")).body == b"z" * MIB
        finally:
            await client.aclose()
    assert server.connections == 1


async def test_no_idle_timeout_when_disabled() -> None:
    async def late(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(r)
        await asyncio.sleep(0.3)
        w.write(ok(b"late"))
        await w.drain()

    async with serving(late) as server:
        client = client_for(server, limits=ResponseLimits(read_idle_timeout=None))
        try:
            assert (await client.request("POST", "/", {}, b"")).body == b"late"
        finally:
            await client.aclose()


async def test_a_shorter_deadline_on_a_reused_connection_is_kept() -> None:
    """The connection's timer, set for the first request's distant deadline, is brought
    forward for a second request with a short one (not left to fire late)."""

    async def slow_second(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        while await s.read_request(r) is not None:
            if len(s.requests) == 2:
                await asyncio.sleep(1.0)
            w.write(ok(b"answer"))
            await w.drain()

    async with serving(slow_second) as server:
        client = client_for(server)
        try:
            assert (await client.request("POST", "/", {}, b"", total=30)).body == b"answer"
            with pytest.raises(LeanHTTPError) as info:
                await client.request("POST", "/", {}, b"", total=0.2)
            assert info.value.reason == "timeout" and "deadline" in str(info.value)
        finally:
            await client.aclose()
    assert server.connections == 1
