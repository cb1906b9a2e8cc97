"""Keys never show, whole, in part or escaped; headers cannot be split; on every path."""

from __future__ import annotations

import json
import socket
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from scripted_server import (
    ECHO_KEY,
    KINDS,
    ScriptedServer,
    assert_no_key,
    build,
    call,
    exception_texts,
    origin_of,
    scripted_for,
)

from agentic_synth._exceptions import AuthenticationError, ConfigurationError, ProviderError
from agentic_synth.providers.anthropic import AnthropicProvider
from agentic_synth.providers.openai import OpenAIProvider

KEY = ECHO_KEY
#: The forms in which servers have been seen to quote a key back.
ECHOES = {
    "raw": f"Incorrect API key provided: {KEY}",
    "json-escaped": "upstream: {" + json.dumps({"api_key": KEY})[1:-1].replace("/", "\\/") + "}",
    "masked": f"Incorrect API key provided: {KEY[:10]}****************{KEY[-4:]}",
    "url-escaped": f"GET /check?key={urllib.parse.quote(KEY, safe='')} failed",
    "repr": f"headers={ {'Authorization': 'Bearer ' + KEY}!r}",
}


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(params=KINDS)
async def served(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, ScriptedServer]]:
    kind: str = request.param
    server = scripted_for(kind)
    await server.start()
    yield kind, server
    await server.server.close()


def sent_key(headers: dict[str, str]) -> str | None:
    """The key a request carried (``x-api-key`` or a bearer token)."""
    return headers.get("x-api-key") or headers.get("Authorization", "").removeprefix("Bearer ")


async def test_key_from_a_mounted_secret_with_a_trailing_newline_works(
    served: tuple[str, ScriptedServer],
) -> None:
    kind, server = served
    p = build(kind, origin_of(server), api_key=KEY + "\n", timeout=5.0)
    try:
        (out,) = await call(p, streamed=False)
    finally:
        await p.aclose()
    assert out.text == "ok"
    assert sent_key(server.seen[0][1]) == KEY


def echoing(status: int, text: str, *, as_json: bool) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        if as_json:
            body = {"type": "error", "error": {"type": "authentication_error", "message": text}}
            return web.json_response(body, status=status)
        return web.Response(status=status, text=text, content_type="text/plain")

    return handler


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize("echo", sorted(ECHOES))
@pytest.mark.parametrize("as_json", [True, False])
async def test_a_key_echoed_by_the_server_never_shows(
    served: tuple[str, ScriptedServer], echo: str, as_json: bool, streamed: bool
) -> None:
    kind, server = served
    server.handler = echoing(401, ECHOES[echo], as_json=as_json)
    p = build(kind, origin_of(server), timeout=5.0)
    try:
        with pytest.raises(AuthenticationError) as info:
            await call(p, streamed=streamed)
    finally:
        await p.aclose()
    assert_no_key(info.value)


def error_event(kind: str, text: str) -> bytes:
    """An error inside a 200 event stream, in ``kind``'s format."""
    if kind == "anthropic":
        payload = {"type": "error", "error": {"type": "overloaded_error", "message": text}}
        return b"event: error\ndata: " + json.dumps(payload).encode() + b"\n\n"
    payload = {"error": {"type": "server_error", "message": text}}
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


@pytest.mark.parametrize("echo", sorted(ECHOES))
async def test_a_key_echoed_inside_a_stream_never_shows(
    served: tuple[str, ScriptedServer], echo: str
) -> None:
    kind, server = served

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(error_event(kind, ECHOES[echo]))
        await resp.write_eof()
        return resp

    server.handler = handler
    p = build(kind, origin_of(server), timeout=5.0)
    try:
        with pytest.raises(ProviderError) as info:
            await call(p, streamed=True)
    finally:
        await p.aclose()
    assert_no_key(info.value)


async def test_extra_headers_are_sent_and_credential_ones_masked(
    served: tuple[str, ScriptedServer],
) -> None:
    kind, server = served
    gateway = "gw-SECRET-9f8e7d6c5b4a"
    server.handler = echoing(401, f"gateway key {gateway} rejected", as_json=True)
    headers = {"X-Title": "synth job", "api-key": gateway}
    p = build(kind, origin_of(server), timeout=5.0, options={"headers": headers})
    try:
        with pytest.raises(AuthenticationError) as info:
            await call(p, streamed=False)
    finally:
        await p.aclose()
    seen = {name.lower(): value for name, value in server.seen[0][1].items()}
    assert seen["x-title"] == "synth job" and seen["api-key"] == gateway
    assert_no_key(info.value, gateway)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("headers", "named"),
    [
        ({"X-Title": "job\r\nX-Injected: 1"}, "X-Title"),
        ({"User-Agent": "bot/1.0\nX-Injected: 1"}, "User-Agent"),
        ({"X-Trace": "abc\x00def-Injected"}, "X-Trace"),
        ({"X-Name": "Injected-ключ"}, "X-Name"),
    ],
)
def test_header_values_that_would_split_a_request_are_refused_when_built(
    kind: str, headers: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        build(kind, "http://127.0.0.1:9", options={"headers": headers})
    assert named in str(info.value) and "Injected" not in str(info.value)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("headers", [{"Bad Name": "x"}, {"Host": "evil.example"}, {"X": 3}])
def test_header_names_and_reserved_headers_are_refused(kind: str, headers: Any) -> None:
    with pytest.raises(ConfigurationError):
        build(kind, "http://127.0.0.1:9", options={"headers": headers})


@pytest.mark.parametrize("bad", ["sk-Injected\r\nX-Evil: 1", "sk-Injected\nx", "sk-\x00Injected"])
def test_a_key_with_a_line_break_given_directly_is_refused_without_showing_it(bad: str) -> None:
    # ModelSpec refuses these already; a provider built by hand must too.
    with pytest.raises(ConfigurationError) as info:
        OpenAIProvider(base_url="http://127.0.0.1:9", api_key=bad, timeout=1, max_connections=1)
    assert "Injected" not in str(info.value) and "Authorization" in str(info.value)
    with pytest.raises(ConfigurationError) as info:
        AnthropicProvider(api_key=bad, base_url="http://127.0.0.1:9", timeout=1, max_connections=1)
    assert "Injected" not in str(info.value)


@pytest.mark.parametrize("kind", KINDS)
async def test_credentials_in_the_base_url_are_not_shown(kind: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: refused
    p = build(kind, f"http://gate:hunter2-secret@127.0.0.1:{port}", timeout=5.0)
    try:
        assert "hunter2" not in repr(p)
        with pytest.raises(ProviderError) as info:
            await call(p, streamed=False)
    finally:
        await p.aclose()
    assert not any("hunter2" in text for text in exception_texts(info.value))
