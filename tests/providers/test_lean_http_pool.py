"""The lean client's pool: resending on a connection found dead, waiting for a connection
(in arrival order, within the deadline)."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest
from test_lean_http import Server, client_for, echo_forever, ok, serving, wait_for

from agentic_synth.providers._lean_http import LeanHTTPError, LeanResponse


def reset(w: asyncio.StreamWriter) -> None:
    """Close with a TCP reset instead of an orderly end."""
    sock = w.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    w.transport.abort()


@pytest.mark.parametrize("how", ["eof", "rst"])
@pytest.mark.parametrize("streamed", [False, True])
async def test_dead_reused_connection_is_resent_once_on_a_new_one(how: str, streamed: bool) -> None:
    """The server answers one request, then drops the connection as the next one arrives
    (its idle close racing our request): that request goes out again, transparently."""

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(r)
        w.write(ok(s.requests[-1][1].upper()))
        await w.drain()
        if s.connections == 1:
            await s.read_request(r)
            if how == "rst":
                reset(w)
            return
        while await s.read_request(r) is not None:
            w.write(ok(s.requests[-1][1].upper()))

    async with serving(handler) as server:
        client = client_for(server)
        try:
            assert (await client.request("POST", "/", {}, b"one")).body == b"ONE"
            if streamed:
                stream = await client.stream("POST", "/", {}, b"two")
                assert await stream.read() == b"TWO"
                stream.close()
            else:
                assert (await client.request("POST", "/", {}, b"two")).body == b"TWO"
            assert client.open_connections == 1
        finally:
            await client.aclose()
    assert server.connections == 2
    assert [body for _, body in server.requests] == [b"one", b"two", b"two"]


async def test_resent_request_is_not_resent_again() -> None:
    """Dead again on the new connection: that one was opened for it, so the error stands."""

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(r)
        if s.connections == 1:
            w.write(ok(b"first"))
            await w.drain()
            await s.read_request(r)

    async with serving(handler) as server:
        client = client_for(server)
        try:
            assert (await client.request("POST", "/", {}, b"")).body == b"first"
            with pytest.raises(LeanHTTPError) as info:
                await client.request("POST", "/", {}, b"again")
            assert info.value.reason == "reset"
            assert client.open_connections == 0
        finally:
            await client.aclose()
    assert server.connections == 2 and len(server.requests) == 3


async def test_no_resend_once_an_answer_byte_arrived() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(r)
        w.write(ok(b"first"))
        await w.drain()
        await s.read_request(r)
        w.write(b"HTTP/1.1 200")  # then gone

    async with serving(handler) as server:
        client = client_for(server)
        try:
            assert (await client.request("POST", "/", {}, b"")).body == b"first"
            with pytest.raises(LeanHTTPError) as info:
                await client.request("POST", "/", {}, b"")
            assert info.value.reason == "truncated"
        finally:
            await client.aclose()
    assert server.connections == 1 and len(server.requests) == 2


async def test_waiting_past_the_deadline_is_a_pool_timeout() -> None:
    release = asyncio.Event()

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        while await s.read_request(r) is not None:
            await release.wait()
            w.write(ok(b"done"))
            await w.drain()

    async with serving(handler) as server:
        client = client_for(server, limit=1)
        try:
            busy = asyncio.ensure_future(client.request("POST", "/", {}, b""))
            await wait_for(lambda: len(server.requests) == 1)
            with pytest.raises(LeanHTTPError) as info:
                await client.request("POST", "/", {}, b"", total=0.1)
            assert info.value.reason == "pool_timeout" and "1 connections" in str(info.value)
            release.set()
            assert (await busy).body == b"done"
            # the timed-out waiter left no trace: the next request takes the idle connection
            assert (await client.request("POST", "/", {}, b"", total=5)).body == b"done"
        finally:
            await client.aclose()
    assert server.connections == 1


async def test_released_connection_goes_to_the_oldest_waiter() -> None:
    """With one connection: waiters are served in arrival order, and a request made right
    as the connection is released (before the oldest waiter runs) queues behind them."""
    go = asyncio.Event()

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        while await s.read_request(r) is not None:
            if len(s.requests) == 1:
                await go.wait()
            w.write(ok(b""))
            await w.drain()

    async with serving(handler) as server:
        client = client_for(server, limit=1)

        async def first_then_again() -> None:
            await client.request("POST", "/", {}, b"first")
            await client.request("POST", "/", {}, b"again")  # no await in between: barges in

        try:
            first = asyncio.ensure_future(first_then_again())
            await wait_for(lambda: len(server.requests) == 1)
            waiters = []
            for name in (b"w1", b"w2", b"w3"):
                waiters.append(asyncio.ensure_future(client.request("POST", "/", {}, name)))
                await asyncio.sleep(0)
            go.set()
            await asyncio.gather(first, *waiters)
        finally:
            await client.aclose()
    assert [body for _, body in server.requests] == [b"first", b"w1", b"w2", b"w3", b"again"]
    assert server.connections == 1


@pytest.mark.parametrize("closing", [False, True])
async def test_connection_given_to_a_waiter_that_gave_up_goes_to_the_next(closing: bool) -> None:
    """The oldest waiter is cancelled after the connection (or, when the answer closes it,
    the freed slot) was handed to it but before it ran: the next waiter gets it."""
    go = asyncio.Event()
    extra = b"Connection: close\r\n" if closing else b""

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        while await s.read_request(r) is not None:
            if len(s.requests) == 1:
                await go.wait()
            w.write(ok(s.requests[-1][1], extra))
            await w.drain()

    async with serving(handler) as server:
        client = client_for(server, limit=1)
        waiters: list[asyncio.Task[LeanResponse]] = []

        async def first_then_cancel() -> None:
            await client.request("POST", "/", {}, b"first")
            waiters[0].cancel()  # the connection was just handed to it

        try:
            first = asyncio.ensure_future(first_then_cancel())
            await wait_for(lambda: len(server.requests) == 1)
            for name in (b"w1", b"w2"):
                waiters.append(asyncio.ensure_future(client.request("POST", "/", {}, name)))
                await asyncio.sleep(0)
            go.set()
            await first
            with pytest.raises(asyncio.CancelledError):
                await waiters[0]
            assert (await asyncio.wait_for(waiters[1], 5)).body == b"w2"
            assert client.open_connections <= 1
        finally:
            await client.aclose()
    assert [body for _, body in server.requests] == [b"first", b"w2"]


async def test_connection_dying_while_handed_over_is_replaced() -> None:
    """A connection handed to a waiter and closed before the waiter runs: the waiter opens
    a new one in its slot rather than writing into a dead socket."""
    async with serving(echo_forever) as server:
        client = client_for(server, limit=1)

        async def busy_then_close() -> None:
            await client.request("POST", "/", {}, b"a")
            (conn,) = client._conns  # just handed to the waiter, which has not run yet
            assert conn.transport is not None
            conn.transport.close()

        try:
            busy = asyncio.ensure_future(busy_then_close())
            await wait_for(lambda: len(server.requests) == 1)
            waiter = asyncio.ensure_future(client.request("POST", "/", {}, b"b", total=5))
            await busy
            assert (await waiter).body == b"B"
        finally:
            await client.aclose()
    assert server.connections == 2
    assert [body for _, body in server.requests] == [b"a", b"b"]
