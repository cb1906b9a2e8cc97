"""TLS from the model's ``verify``, the environment's proxies, and the warning for a key
sent in clear, on every provider path (loopback servers, a loopback proxy, a trustme CA)."""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from scripted_server import (
    ECHO_KEY,
    KINDS,
    LoopbackProxy,
    ScriptedServer,
    api_path,
    build,
    call,
    key_windows,
    origin_of,
    scripted_for,
)

from agentic_synth._exceptions import ConfigurationError, UnreachableError

HOST = "api.example.test"
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
#: The paths that can go through a proxy: lean has none, so the OpenAI provider picks
#: aiohttp by itself ("auto") when the environment asks for one.
PROXIED = ("openai-auto", "anthropic")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.lower(), raising=False)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "private-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(params=KINDS)
async def tls_server(
    request: pytest.FixtureRequest, ca: trustme.CA
) -> AsyncIterator[tuple[str, ScriptedServer]]:
    kind: str = request.param
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost", HOST).configure_cert(context)
    server = scripted_for(kind)
    await server.start(context)
    yield kind, server
    await server.server.close()


async def test_https_with_a_private_ca_given_per_model(
    tls_server: tuple[str, ScriptedServer], ca_file: str
) -> None:
    kind, server = tls_server
    origin = origin_of(server)
    assert origin.startswith("https://127.0.0.1:")
    p = build(kind, origin, verify=ca_file, timeout=5.0)
    try:
        (out,) = await call(p, streamed=False)
    finally:
        await p.aclose()
    assert out.text == "ok"


async def test_system_cas_refuse_a_private_ca_with_a_clear_error(
    tls_server: tuple[str, ScriptedServer],
) -> None:
    kind, server = tls_server
    origin = origin_of(server)
    p = build(kind, origin, timeout=5.0)  # verify=True: the system's CAs
    try:
        with pytest.raises(UnreachableError) as info:
            await call(p, streamed=False)
    finally:
        await p.aclose()
    text = info.value.message
    assert text.startswith(f"cannot connect to {origin.removeprefix('https://')}: ")
    assert "TLS certificate not trusted" in text and "verify='/path/to/ca.pem'" in text
    assert not server.seen


# ----------------------------------------------------------------- proxies


@pytest.fixture
async def upstream(ca: trustme.CA) -> AsyncIterator[dict[str, ScriptedServer]]:
    """One plain and one TLS server (certified for HOST) with both providers' paths."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST).configure_cert(context)
    servers = {}
    for scheme, tls in (("http", None), ("https", context)):
        server = ScriptedServer((api_path("openai-lean"), api_path("anthropic")), _ok_any)
        await server.start(tls)
        servers[scheme] = server
    yield servers
    for server in servers.values():
        await server.server.close()


async def _ok_any(request: Any) -> Any:
    from scripted_server import ok_handler

    kind = "anthropic" if request.path.endswith("/messages") else "openai-lean"
    return await ok_handler(kind)(request)


def port_of(server: ScriptedServer) -> int:
    port = server.server.port
    assert port is not None
    return port


@pytest.mark.parametrize("var", ["HTTPS_PROXY", "https_proxy", "ALL_PROXY"])
@pytest.mark.parametrize("kind", PROXIED)
async def test_an_https_origin_is_tunnelled_through_the_proxy(
    kind: str,
    var: str,
    upstream: dict[str, ScriptedServer],
    ca_file: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = port_of(upstream["https"])
    async with LoopbackProxy(port) as proxy:
        monkeypatch.setenv(var, proxy.url)
        p = build(kind, f"https://{HOST}:{port}", verify=ca_file, timeout=5.0)
        try:
            (out,) = await call(p, streamed=False)
        finally:
            await p.aclose()
    assert out.text == "ok"
    assert proxy.requests == [f"CONNECT {HOST}:{port} HTTP/1.1"]


@pytest.mark.parametrize("var", ["HTTP_PROXY", "ALL_PROXY"])
@pytest.mark.parametrize("kind", PROXIED)
async def test_an_http_origin_is_forwarded_by_the_proxy(
    kind: str, var: str, upstream: dict[str, ScriptedServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    port = port_of(upstream["http"])
    async with LoopbackProxy(port) as proxy:
        monkeypatch.setenv(var, proxy.url)
        p = build(kind, f"http://{HOST}:{port}", timeout=5.0)
        try:
            (out,) = await call(p, streamed=False)
        finally:
            await p.aclose()
    assert out.text == "ok"
    assert proxy.requests == [f"POST http://{HOST}:{port}{api_path(kind)} HTTP/1.1"]


@pytest.mark.parametrize("kind", PROXIED)
async def test_proxy_credentials_are_sent_to_the_proxy_and_never_shown(
    kind: str, upstream: dict[str, ScriptedServer], ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = port_of(upstream["https"])
    async with LoopbackProxy(port) as proxy:
        authority = proxy.url.removeprefix("http://")
        monkeypatch.setenv("HTTPS_PROXY", f"http://synth:pr0xy-pa55word@{authority}")
        p = build(kind, f"https://{HOST}:{port}", verify=ca_file, timeout=5.0)
        try:
            await call(p, streamed=False)
            assert "pr0xy-pa55word" not in repr(p)
        finally:
            await p.aclose()
    expected = base64.b64encode(b"synth:pr0xy-pa55word")
    assert b"Proxy-Authorization: Basic " + expected in proxy.heads[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("kind", PROXIED)
async def test_an_unreachable_proxy_is_named_as_the_proxy(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
    p = build(kind, f"https://{HOST}", timeout=5.0)
    try:
        with pytest.raises(UnreachableError) as info:
            await call(p, streamed=False)
    finally:
        await p.aclose()
    assert info.value.host == "127.0.0.1"
    assert info.value.message.startswith(
        f"cannot connect to proxy 127.0.0.1 (HTTPS_PROXY=http://127.0.0.1:{port}): "
    )
    assert "check the proxy setting or NO_PROXY" in info.value.message


@pytest.fixture
async def host_is_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """HOST resolves to 127.0.0.1 (only a direct connection resolves it)."""
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo

    async def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        return await real("127.0.0.1" if host == HOST else host, *args, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)


@pytest.mark.parametrize("no_proxy", [HOST, f".example.test,{HOST}:1", "*"])
@pytest.mark.parametrize("kind", PROXIED)
async def test_no_proxy_goes_direct(
    kind: str,
    no_proxy: str,
    upstream: dict[str, ScriptedServer],
    host_is_loopback: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = port_of(upstream["http"])
    async with LoopbackProxy(port) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", no_proxy)
        p = build(kind, f"http://{HOST}:{port}", timeout=5.0)
        try:
            (out,) = await call(p, streamed=False)
        finally:
            await p.aclose()
    assert out.text == "ok" and proxy.requests == []
    if kind == "openai-auto":
        assert p.transport == "lean"  # nothing to proxy: the fast transport


@pytest.mark.parametrize("kind", PROXIED)
async def test_loopback_is_never_proxied(
    kind: str, upstream: dict[str, ScriptedServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = upstream["http"]
    async with LoopbackProxy(port_of(server)) as proxy:
        monkeypatch.setenv("ALL_PROXY", proxy.url)
        p = build(kind, origin_of(server), timeout=5.0)
        try:
            await call(p, streamed=False)
        finally:
            await p.aclose()
    assert proxy.requests == []


@pytest.mark.parametrize("scheme", ["socks5", "socks5h", "socks4"])
@pytest.mark.parametrize("kind", [*KINDS, "openai-auto"])
def test_a_socks_proxy_is_refused_when_built(
    kind: str, scheme: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALL_PROXY", f"{scheme}://user:secret-pass@127.0.0.1:1080")
    with pytest.raises(ConfigurationError) as info:
        build(kind, f"https://{HOST}")
    text = str(info.value)
    assert "SOCKS is not supported" in text and "HTTP proxy (http://host:port)" in text
    assert "secret-pass" not in text


# ----------------------------------------------------------------- a key in clear


@pytest.fixture
def warnings_seen(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.WARNING, logger="agentic_synth")
    yield caplog


def plain_http_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "plain http://" in r.getMessage()]


@pytest.mark.parametrize("kind", PROXIED)
async def test_a_key_over_plain_http_to_a_remote_host_warns_once_per_provider(
    kind: str,
    upstream: dict[str, ScriptedServer],
    warnings_seen: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = port_of(upstream["http"])
    async with LoopbackProxy(port) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        p = build(kind, f"http://{HOST}:{port}", timeout=5.0)
        try:
            for streamed in (False, False, False):
                await call(p, streamed=streamed)
        finally:
            await p.aclose()
    (record,) = plain_http_warnings(warnings_seen)
    assert record.levelno == logging.WARNING and HOST in record.getMessage()
    assert not any(w in warnings_seen.text for w in key_windows(ECHO_KEY))


@pytest.mark.parametrize("kind", KINDS)
def test_no_warning_for_loopback_https_or_no_key(
    kind: str, warnings_seen: pytest.LogCaptureFixture
) -> None:
    build(kind, "http://127.0.0.1:9")
    build(kind, "http://localhost:9")
    build(kind, f"https://{HOST}")
    if kind != "anthropic":  # the Anthropic provider needs a key
        build(kind, f"http://{HOST}", api_key=None)
    assert plain_http_warnings(warnings_seen) == []


def test_an_explicit_lean_transport_under_a_proxy_warns_that_it_goes_direct(
    warnings_seen: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://user:proxy-secret@127.0.0.1:3128")
    p = build("openai-lean", f"https://{HOST}")
    assert p.transport == "lean"
    (record,) = [r for r in warnings_seen.records if "transport='lean'" in r.getMessage()]
    assert "HTTPS_PROXY=http://127.0.0.1:3128" in record.getMessage()
    assert "proxy-secret" not in warnings_seen.text
