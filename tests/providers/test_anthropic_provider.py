"""The Anthropic provider (official SDK) against scripted loopback handlers."""

from __future__ import annotations

import asyncio
import json
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anthropic
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agentic_synth._exceptions import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    OverloadedError,
    ProviderError,
    RateLimitedError,
    ServerError,
)
from agentic_synth._spec import ModelSpec
from agentic_synth._types import ProviderStreamEnd, Request, TextDelta
from agentic_synth.providers import anthropic as anthropic_provider
from agentic_synth.providers._base import Provider
from agentic_synth.providers.anthropic import AnthropicProvider, schema_instruction

KEY = "sk-ant-test-ANTHROPICKEY0123456789"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Scripted:
    """A loopback server whose ``/v1/messages`` runs the current ``handler``."""

    def __init__(self) -> None:
        self.handler: Handler = _ok_handler
        self.seen: list[tuple[dict[str, Any], dict[str, str]]] = []
        self.disconnects = 0
        app = web.Application()
        app.router.add_post("/v1/messages", self._dispatch)
        self.server = TestServer(app)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((await request.json(), dict(request.headers)))
        try:
            return await self.handler(request)
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnects += 1
            raise

    @property
    def url(self) -> str:
        return str(self.server.make_url(""))


MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-x",
    "content": [
        {"type": "thinking", "thinking": "hmm", "signature": "s"},
        {"type": "text", "text": "Hello"},
        {"type": "text", "text": " world"},
    ],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 10,
        "cache_creation_input_tokens": 3,
        "cache_read_input_tokens": 4,
        "output_tokens": 5,
    },
}


async def _ok_handler(request: web.Request) -> web.StreamResponse:
    return web.json_response(
        MESSAGE,
        headers={
            "request-id": "req_a",
            "anthropic-ratelimit-requests-remaining": "49",
            "Anthropic-RateLimit-Tokens-Reset": "2026-01-01T00:00:00Z",
        },
    )


def event(name: str, payload: Any) -> bytes:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


START = event(
    "message_start",
    {
        "type": "message_start",
        "message": {
            **MESSAGE,
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": 10, "output_tokens": 1},
        },
    },
)
BLOCK = event(
    "content_block_start",
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
)
PING = event("ping", {"type": "ping"})


def delta(text: str) -> bytes:
    return event(
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
    )


END = (
    event("content_block_stop", {"type": "content_block_stop", "index": 0})
    + event(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "max_tokens", "stop_sequence": None},
            "usage": {"output_tokens": 7},
        },
    )
    + event("message_stop", {"type": "message_stop"})
)


def streaming(*parts: bytes, pause: float = 0.0, close: bool = False) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "request-id": "req_s",
                "anthropic-ratelimit-tokens-remaining": "900",
            }
        )
        await resp.prepare(request)
        for part in parts:
            await resp.write(part)
            await asyncio.sleep(pause)
        if close:
            assert request.transport is not None
            request.transport.close()
            return resp
        await resp.write_eof()
        return resp

    return handler


def error(status: int, body: Any, headers: dict[str, str] | None = None) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        text = body if isinstance(body, str) else json.dumps(body)
        return web.Response(
            status=status, text=text, headers=headers, content_type="application/json"
        )

    return handler


def api_error(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


@pytest.fixture
async def scripted() -> AsyncIterator[Scripted]:
    s = Scripted()
    await s.server.start_server()
    yield s
    await s.server.close()


@pytest.fixture
async def provider(scripted: Scripted) -> AsyncIterator[AnthropicProvider]:
    spec = ModelSpec("anthropic", "claude-x", base_url=scripted.url, api_key=KEY, timeout=5.0)
    p = anthropic_provider.create(spec, max_connections=8)
    yield p
    await p.aclose()


def req(**kw: Any) -> Request:
    return Request(messages=[{"role": "user", "content": "hello"}], max_tokens=32, **kw)


async def collect(provider: AnthropicProvider, request: Request) -> list[Any]:
    return [e async for e in provider.stream("claude-x", request)]


def assert_no_key(exc: BaseException) -> None:
    text = "".join(traceback.format_exception(exc))
    for item in (str(exc), repr(exc), text, repr(exc.__cause__), str(exc.__cause__)):
        assert KEY not in item


def test_create_needs_key_and_repr_hides_it() -> None:
    with pytest.raises(ConfigurationError):
        anthropic_provider.create(ModelSpec("anthropic", "m"), max_connections=1)
    p = AnthropicProvider(api_key=KEY, base_url="http://h:1", timeout=1, max_connections=1)
    assert KEY not in repr(p) and "h:1" in repr(p)


async def test_complete_maps_request_and_response(
    scripted: Scripted, provider: AnthropicProvider
) -> None:
    assert isinstance(provider, Provider)
    out = await provider.complete(
        "claude-x",
        req(
            system="be brief",
            temperature=0.2,
            top_p=0.8,
            stop=("END",),
            extra={"top_k": 5, "metadata": {"user_id": "u"}},
        ),
    )
    body, headers = scripted.seen[0]
    assert body == {
        "model": "claude-x",
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": 32,
        "system": "be brief",
        "temperature": 0.2,
        "top_p": 0.8,
        "stop_sequences": ["END"],
        "top_k": 5,
        "metadata": {"user_id": "u"},
    }
    # SDK 1.x sends ``x-api-key``, 2.x ``Authorization: Bearer``.
    assert KEY in (
        headers.get("x-api-key"),
        headers.get("Authorization", "").removeprefix("Bearer "),
    )
    assert headers["x-stainless-retry-count"] == "0"
    assert (out.text, out.finish_reason, out.request_id) == ("Hello world", "end_turn", "req_a")
    assert (out.usage.input_tokens, out.usage.output_tokens) == (17, 5)
    assert out.headers == {
        "anthropic-ratelimit-requests-remaining": "49",
        "anthropic-ratelimit-tokens-reset": "2026-01-01T00:00:00Z",
    }


async def test_json_schema_becomes_system_instruction(
    scripted: Scripted, provider: AnthropicProvider
) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    await provider.complete("claude-x", req(json_schema=schema))
    await provider.complete("claude-x", req(system="You are terse.", json_schema=schema))
    assert scripted.seen[0][0]["system"] == schema_instruction(schema)
    assert scripted.seen[1][0]["system"] == "You are terse.\n\n" + schema_instruction(schema)
    assert json.dumps(schema) in schema_instruction(schema)


async def test_stream_yields_deltas_then_one_end(
    scripted: Scripted, provider: AnthropicProvider
) -> None:
    wire = START + BLOCK + PING + delta("Hel") + delta("lo") + END
    scripted.handler = streaming(wire[:50], wire[50:51], wire[51:300], wire[300:], pause=0.001)
    events = await collect(provider, req())
    assert scripted.seen[0][0]["stream"] is True
    assert events[:2] == [TextDelta("Hel"), TextDelta("lo")]
    end = events[2]
    assert len(events) == 3 and isinstance(end, ProviderStreamEnd)
    assert (end.finish_reason, end.usage.input_tokens, end.usage.output_tokens) == (
        "max_tokens",
        10,
        7,
    )
    assert end.request_id == "req_s"
    assert end.headers == {"anthropic-ratelimit-tokens-remaining": "900"}


@pytest.mark.parametrize(
    ("status", "body", "headers", "cls", "retry_after"),
    [
        (429, api_error("rate_limit_error", "slow"), {"retry-after": "2"}, RateLimitedError, 2.0),
        (
            429,
            api_error("rate_limit_error", "slow"),
            {"retry-after-ms": "1500"},
            RateLimitedError,
            1.5,
        ),
        (529, api_error("overloaded_error", "Overloaded"), None, OverloadedError, None),
        (500, api_error("api_error", "oops"), None, ServerError, None),
        (503, "upstream connect error", None, ServerError, None),
        (408, api_error("timeout_error", "slow"), None, ServerError, None),
        (409, api_error("api_error", "conflict"), None, ServerError, None),
        (
            400,
            api_error("invalid_request_error", "max_tokens: too big"),
            None,
            BadRequestError,
            None,
        ),
        (404, api_error("not_found_error", "model: claude-x"), None, BadRequestError, None),
        (413, api_error("request_too_large", "big"), None, BadRequestError, None),
        (422, api_error("invalid_request_error", "bad"), None, BadRequestError, None),
        (
            401,
            api_error("authentication_error", f"invalid x-api-key {KEY}"),
            None,
            AuthenticationError,
            None,
        ),
        (403, api_error("permission_error", "no"), None, AuthenticationError, None),
    ],
)
async def test_status_errors(
    scripted: Scripted,
    provider: AnthropicProvider,
    status: int,
    body: Any,
    headers: dict[str, str] | None,
    cls: type[ProviderError],
    retry_after: float | None,
) -> None:
    scripted.handler = error(status, body, {**(headers or {}), "request-id": "req_e"})
    for call in (lambda: provider.complete("claude-x", req()), lambda: collect(provider, req())):
        with pytest.raises(cls) as info:
            await call()
        exc = info.value
        assert type(exc) is cls
        assert (exc.status, exc.retry_after, exc.request_id) == (status, retry_after, "req_e")
        assert isinstance(exc.__cause__, anthropic.APIStatusError)
        assert f"HTTP {status}" in str(exc)
        assert_no_key(exc)
    assert len(scripted.seen) == 2  # SDK retries are off


async def test_should_retry_header_overrides(
    scripted: Scripted, provider: AnthropicProvider
) -> None:
    scripted.handler = error(500, api_error("api_error", "x"), {"x-should-retry": "false"})
    with pytest.raises(ServerError) as info:
        await provider.complete("claude-x", req())
    assert info.value.retryable is False
    scripted.handler = error(
        400, api_error("invalid_request_error", "x"), {"x-should-retry": "true"}
    )
    with pytest.raises(BadRequestError) as info2:
        await provider.complete("claude-x", req())
    assert info2.value.retryable is True


@pytest.mark.parametrize(
    ("kind", "cls"), [("overloaded_error", OverloadedError), ("api_error", ServerError)]
)
async def test_error_event_inside_200_stream(
    scripted: Scripted, provider: AnthropicProvider, kind: str, cls: type[ProviderError]
) -> None:
    scripted.handler = streaming(
        START + BLOCK + delta("par") + event("error", api_error(kind, "x"))
    )
    seen: list[Any] = []
    with pytest.raises(cls) as info:
        async for ev in provider.stream("claude-x", req()):
            seen.append(ev)
    assert seen == [TextDelta("par")]
    assert type(info.value) is cls and info.value.request_id == "req_s"
    assert_no_key(info.value)


async def test_timeouts(scripted: Scripted) -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.5)
        return await _ok_handler(request)

    scripted.handler = slow
    p = AnthropicProvider(api_key=KEY, base_url=scripted.url, timeout=0.05, max_connections=2)
    try:
        with pytest.raises(APITimeoutError) as info:
            await p.complete("m", req())
        assert_no_key(info.value)
        with pytest.raises(APITimeoutError):
            await collect(p, req())  # type: ignore[arg-type]
        assert (await p.complete("m", req(timeout=3.0))).text == "Hello world"
    finally:
        await p.aclose()


async def test_stream_deadline_covers_the_whole_stream(scripted: Scripted) -> None:
    # Each event arrives well within the read timeout, the whole stream does not.
    scripted.handler = streaming(START, *[delta("x")] * 30, END, pause=0.02)
    p = AnthropicProvider(api_key=KEY, base_url=scripted.url, timeout=0.2, max_connections=2)
    try:
        with pytest.raises(APITimeoutError, match="outlived"):
            await collect(p, req())  # type: ignore[arg-type]
    finally:
        await p.aclose()


async def test_reset_malformed_and_truncated(
    scripted: Scripted, provider: AnthropicProvider
) -> None:
    async def reset(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()
        await asyncio.sleep(0.05)
        return web.Response()

    scripted.handler = reset
    with pytest.raises(APIConnectionError) as info:
        await provider.complete("claude-x", req())
    assert isinstance(info.value.__cause__, anthropic.APIConnectionError)
    scripted.handler = error(200, '{"content": [')
    with pytest.raises(APIConnectionError, match="malformed"):
        await provider.complete("claude-x", req())
    scripted.handler = streaming(START + BLOCK + delta("a") + event("content_block_delta", b"{x"))
    with pytest.raises(APIConnectionError, match="malformed"):
        await collect(provider, req())
    scripted.handler = streaming(START + BLOCK + delta("a"))
    with pytest.raises(APIConnectionError, match="message_stop"):
        await collect(provider, req())
    scripted.handler = streaming(START + BLOCK + delta("a") + b"event: content_bl", close=True)
    with pytest.raises(APIConnectionError):
        await collect(provider, req())


async def test_early_close_drops_the_connection_at_once(
    scripted: Scripted, provider: AnthropicProvider
) -> None:
    scripted.handler = streaming(START, BLOCK, *[delta(f"t{i}") for i in range(200)], pause=0.01)
    stream = provider.stream("claude-x", req())
    assert await anext(stream) == TextDelta("t0")  # type: ignore[call-overload]
    await stream.aclose()  # type: ignore[attr-defined]
    await wait_for_disconnect(scripted)


async def test_cancellation_drops_the_connection(
    scripted: Scripted, provider: AnthropicProvider
) -> None:
    scripted.handler = streaming(START, BLOCK, *[delta(f"t{i}") for i in range(200)], pause=0.01)
    got = asyncio.Event()

    async def consume() -> None:
        async for _ in provider.stream("claude-x", req()):
            got.set()

    task = asyncio.create_task(consume())
    await got.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_for_disconnect(scripted)


async def wait_for_disconnect(scripted: Scripted) -> None:
    for _ in range(100):
        if scripted.disconnects:
            break
        await asyncio.sleep(0.01)
    assert scripted.disconnects == 1
