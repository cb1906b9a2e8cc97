"""Connection failures, pool backlog and redirects, on every provider path.

Each failure must come out as the one exception class that says what happened,
with one message naming where and what to check, and never be retried as a
"malformed response".
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from scripted_server import (
    KINDS,
    ScriptedServer,
    api_path,
    assert_no_key,
    build,
    call,
    ok_json,
    origin_of,
    scripted_for,
)

from agentic_synth._exceptions import (
    APIConnectionError,
    PoolTimeoutError,
    RedirectError,
    UnreachableError,
)


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
async def unresolvable(monkeypatch: pytest.MonkeyPatch) -> None:
    """``*.invalid`` names fail to resolve at once (no DNS server is asked)."""
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo

    async def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str | bytes) and str(host).rstrip(".").endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return await real(host, *args, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize("kind", KINDS)
async def test_unresolvable_host_is_unreachable_with_one_clear_message(
    kind: str, streamed: bool, unresolvable: None
) -> None:
    p = build(kind, "http://api.nowhere.invalid:8080", timeout=5.0)
    try:
        with pytest.raises(UnreachableError) as info:
            await call(p, streamed=streamed)
    finally:
        await p.aclose()
    exc = info.value
    assert exc.host == "api.nowhere.invalid" and exc.retryable
    assert exc.message == (
        "cannot connect to api.nowhere.invalid:8080: name not resolved; "
        "check base_url or the network"
    )
    assert_no_key(exc)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize("kind", KINDS)
async def test_refused_port_is_unreachable(kind: str, streamed: bool) -> None:
    port = free_port()  # closed again: nothing listens there
    p = build(kind, f"http://127.0.0.1:{port}", timeout=5.0)
    try:
        with pytest.raises(UnreachableError) as info:
            await call(p, streamed=streamed)
    finally:
        await p.aclose()
    assert info.value.host == "127.0.0.1"
    assert info.value.message.startswith(f"cannot connect to 127.0.0.1:{port}: connection refused;")
    assert_no_key(info.value)


@pytest.mark.parametrize("kind", KINDS)
async def test_waiting_for_a_pooled_connection_is_a_pool_timeout(kind: str) -> None:
    release = asyncio.Event()
    arrived = asyncio.Event()

    async def held(request: web.Request) -> web.StreamResponse:
        arrived.set()
        await release.wait()
        return web.json_response(ok_json(kind))

    server = scripted_for(kind, held)
    await server.start()
    p = build(kind, origin_of(server), max_connections=1, timeout=10.0)
    try:
        first = asyncio.create_task(call(p, streamed=False))
        await arrived.wait()
        with pytest.raises(PoolTimeoutError) as info:
            await call(p, streamed=False, timeout=0.3)
        # Our own backlog: not held against the provider's health.
        assert info.value.provider_fault is False
        release.set()
        await first
        assert len(server.seen) == 1  # the second request never left
    finally:
        release.set()
        await p.aclose()
        await server.server.close()


def redirecting(status: int, location: str) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, headers={"Location": location}, text="<html>moved")

    return handler


@pytest.fixture
async def server() -> AsyncIterator[ScriptedServer]:
    # Started per test with the handler the test sets.
    s = ScriptedServer(("/v1/chat/completions", "/v1/messages"), redirecting(301, "/"))
    await s.start()
    yield s
    await s.server.close()


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize("kind", KINDS)
async def test_http_base_url_redirected_to_https_says_so(
    kind: str, streamed: bool, server: ScriptedServer
) -> None:
    origin = origin_of(server)
    secure = origin.replace("http://", "https://")
    server.handler = redirecting(301, secure + api_path(kind))
    p = build(kind, origin, timeout=5.0)
    try:
        with pytest.raises(RedirectError) as info:
            await call(p, streamed=streamed)
    finally:
        await p.aclose()
    exc = info.value
    assert exc.status == 301 and not exc.retryable
    assert exc.location == secure + api_path(kind)
    assert "HTTP 301" in exc.message and f"redirected to {secure}{api_path(kind)}" in exc.message
    assert "https://, not http://" in exc.message
    assert f"set base_url to the final URL ({secure}" in exc.message
    assert len(server.seen) == 1  # not followed: the key went nowhere else
    assert not isinstance(exc, APIConnectionError)  # never a "malformed response"


@pytest.mark.parametrize("kind", KINDS)
async def test_relative_redirect_names_the_resolved_target(
    kind: str, server: ScriptedServer
) -> None:
    server.handler = redirecting(307, "/v2" + api_path(kind).removeprefix("/v1"))
    origin = origin_of(server)
    p = build(kind, origin, timeout=5.0)
    try:
        with pytest.raises(RedirectError) as info:
            await call(p, streamed=False)
    finally:
        await p.aclose()
    target = f"{origin}/v2{api_path(kind).removeprefix('/v1')}"
    assert info.value.status == 307 and info.value.location == target.removeprefix(origin)
    assert f"redirected to {target}" in info.value.message
    assert len(server.seen) == 1
