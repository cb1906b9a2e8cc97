"""Connecting: happy eyeballs on asyncio's loop (its own) and on uvloop (ours), and what a
failed connect says. Name resolution is scripted by replacing the loop's ``getaddrinfo``."""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
import sys
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import pytest
from test_lean_http import echo_forever, serving

from agentic_synth.providers._lean_http import (
    ConnectKind,
    LeanHTTPClient,
    LeanHTTPError,
    _connect_kind,
    _interleave,
)

T = TypeVar("T")

linux_only = pytest.mark.skipif(
    sys.platform != "linux", reason="a full accept queue drops SYNs on Linux"
)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@contextmanager
def blackhole() -> Iterator[int]:
    """A loopback port that never answers a connect: its accept queue (backlog 0) is full,
    so the kernel drops further SYNs and a connect hangs, as to a filtered address."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port: int = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port))
    try:
        yield port
    finally:
        filler.close()
        listener.close()


def resolve_to(loop: asyncio.AbstractEventLoop, *ports: int) -> list[str]:
    """Make ``loop`` resolve ``api.example`` to 127.0.0.1 at each of ``ports`` (other names as
    before: uvloop's ``sock_connect`` resolves its address too); returns the names asked."""
    asked: list[str] = []
    real = loop.getaddrinfo

    async def getaddrinfo(host: Any, port: Any, **kwargs: Any) -> list[Any]:
        if host != "api.example":
            return await real(host, port, **kwargs)
        asked.append(host)
        return [
            (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", p))
            for p in ports
        ]

    loop.getaddrinfo = getaddrinfo  # type: ignore[method-assign]
    return asked


def on_each_loop(scenario: Callable[[], Coroutine[Any, Any, T]]) -> list[T]:
    """Run ``scenario`` on asyncio's own loop (native happy eyeballs) and on uvloop (ours)."""
    import uvloop

    return [asyncio.run(scenario()), uvloop.run(scenario())]


async def call(client: LeanHTTPClient, total: float = 5) -> bytes:
    try:
        return (await client.request("POST", "/", {}, b"hi", total=total)).body
    finally:
        await client.aclose()


@linux_only
def test_happy_eyeballs_skips_an_address_that_hangs() -> None:
    """The first address never answers; the second is tried after the delay and wins."""
    with blackhole() as dead:

        async def scenario() -> tuple[bytes, list[str], bool]:
            async with serving(echo_forever) as server:
                asked = resolve_to(asyncio.get_running_loop(), dead, server.port)
                client = LeanHTTPClient(
                    "http", "api.example", 1, max_connections=1, happy_eyeballs_delay=0.05
                )
                body = await call(client)
                return body, asked, client._native_eyeballs

        assert on_each_loop(scenario) == [
            (b"HI", ["api.example"], True),
            (b"HI", ["api.example"], False),
        ]


@linux_only
def test_without_happy_eyeballs_the_hanging_address_blocks() -> None:
    """The same addresses one after the other: the first one's connect eats the deadline
    (this is what the test above is protected from)."""
    with blackhole() as dead:

        async def scenario() -> str:
            async with serving(echo_forever) as server:
                resolve_to(asyncio.get_running_loop(), dead, server.port)
                client = LeanHTTPClient(
                    "http", "api.example", 1, max_connections=1, happy_eyeballs_delay=None
                )
                with pytest.raises(LeanHTTPError) as info:
                    await call(client, total=0.3)
                return info.value.reason

        # asyncio's loop only: uvloop's plain create_connection resolves names itself
        assert asyncio.run(scenario()) == "timeout"


@linux_only
def test_a_connect_that_hangs_fails_at_the_connect_timeout() -> None:
    """A blackholed address is a connect failure after ``connect_timeout``, well inside the
    call's total: it says where and how long it waited, and its slot is free again."""
    with blackhole() as dead:

        async def scenario() -> tuple[str, ConnectKind | None, str, int]:
            client = LeanHTTPClient(
                "http", "127.0.0.1", dead, max_connections=1, connect_timeout=0.3
            )
            with pytest.raises(LeanHTTPError) as info:
                await call(client, total=60)
            return info.value.reason, info.value.kind, str(info.value), client.open_connections

        for reason, kind, text, still_open in on_each_loop(scenario):
            assert (reason, kind) == ("connect", "timeout")
            assert f"127.0.0.1:{dead}: did not answer in 0.3 s" in text
            assert still_open == 0


@linux_only
async def test_a_deadline_before_the_connect_timeout_is_a_plain_timeout() -> None:
    """The call ran out of time first: nothing says the host would not have answered."""
    with blackhole() as dead:
        client = LeanHTTPClient("http", "127.0.0.1", dead, max_connections=1, connect_timeout=30)
        with pytest.raises(LeanHTTPError) as info:
            await call(client, total=0.3)
    assert (info.value.reason, info.value.kind) == ("timeout", None)


def test_the_connect_timeout_defaults_to_the_shared_constant(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Read when the client is built, so every transport follows ``_net.CONNECT_TIMEOUT``."""
    from agentic_synth.providers import _net

    assert LeanHTTPClient("http", "h", None, max_connections=1)._connect_timeout == 30.0
    monkeypatch.setattr(_net, "CONNECT_TIMEOUT", 2.5)
    assert LeanHTTPClient("http", "h", None, max_connections=1)._connect_timeout == 2.5
    with pytest.raises(ValueError, match="connect_timeout"):
        LeanHTTPClient("http", "h", None, max_connections=1, connect_timeout=0)


def test_refused_on_every_address() -> None:
    """Two addresses, both refused: one error naming the origin, kind "refused" (the
    failures come folded into one "Multiple exceptions" text)."""
    first, second = closed_port(), closed_port()

    async def scenario() -> tuple[str, ConnectKind | None, str]:
        resolve_to(asyncio.get_running_loop(), first, second)
        client = LeanHTTPClient("http", "api.example", 8443, max_connections=1)
        with pytest.raises(LeanHTTPError) as info:
            await call(client)
        return info.value.reason, info.value.kind, str(info.value)

    for reason, kind, text in on_each_loop(scenario):
        assert (reason, kind) == ("connect", "refused")
        assert "api.example:8443" in text


@pytest.mark.parametrize("eyeballs", [0.25, None])
async def test_refused_ip_literal(eyeballs: float | None) -> None:
    port = closed_port()
    client = LeanHTTPClient(
        "http", "127.0.0.1", port, max_connections=1, happy_eyeballs_delay=eyeballs
    )
    with pytest.raises(LeanHTTPError) as info:
        await call(client)
    assert (info.value.reason, info.value.kind) == ("connect", "refused")
    assert f"127.0.0.1:{port}" in str(info.value)
    assert client.open_connections == 0


def test_name_that_does_not_resolve() -> None:
    async def scenario() -> tuple[str, ConnectKind | None, str]:
        async def getaddrinfo(*_: Any, **__: Any) -> list[Any]:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

        asyncio.get_running_loop().getaddrinfo = getaddrinfo  # type: ignore[method-assign]
        client = LeanHTTPClient("https", "api.nowhere.example", None, max_connections=1)
        with pytest.raises(LeanHTTPError) as info:
            await call(client)
        return info.value.reason, info.value.kind, str(info.value)

    for reason, kind, text in on_each_loop(scenario):
        assert (reason, kind) == ("connect", "dns")
        assert "api.nowhere.example:443" in text and "Name or service not known" in text


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (OSError(errno.ENETUNREACH, "Network is unreachable"), "unreachable"),
        (OSError(errno.EHOSTUNREACH, "No route to host"), "unreachable"),
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), "refused"),
        (OSError("Multiple exceptions: [Errno 101] a, [Errno 113] b"), "unreachable"),
        # IPv6 without a route, IPv4 refused: something answered
        (OSError("Multiple exceptions: [Errno 101] a, [Errno 111] b"), "refused"),
        (OSError("Multiple exceptions: [Errno 101] a, [Errno 104] b"), "other"),
        (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), "other"),
        (socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"), "dns"),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), "tls"),
    ],
)
def test_connect_kind(error: OSError, kind: str) -> None:
    assert _connect_kind(error) == kind


def test_interleave_alternates_families_first_family_first() -> None:
    v6 = [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (f"::{i}", 1, 0, 0)) for i in (1, 2, 3)]
    v4 = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (f"10.0.0.{i}", 1)) for i in (1, 2)]
    order = [info[4][0] for info in _interleave([*v6, *v4])]
    assert order == ["::1", "10.0.0.1", "::2", "10.0.0.2", "::3"]
    assert [info[4][0] for info in _interleave(v4)] == ["10.0.0.1", "10.0.0.2"]


def test_arguments() -> None:
    client = LeanHTTPClient("http", "h", None, max_connections=1)
    assert client._limits.max_body_bytes == 64 * 1024 * 1024  # ResponseLimits() defaults
    assert client._eyeballs == 0.25
    for literal in ("127.0.0.1", "::1"):  # one address: nothing to race
        assert LeanHTTPClient("http", literal, 1, max_connections=1)._eyeballs is None
    with pytest.raises(ValueError, match="happy_eyeballs_delay"):
        LeanHTTPClient("http", "h", None, max_connections=1, happy_eyeballs_delay=-1)
