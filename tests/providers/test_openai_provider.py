"""The OpenAI-compatible provider against scripted loopback handlers (exact wire control)."""

from __future__ import annotations

import asyncio
import json
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

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
from agentic_synth.providers import openai as openai_provider
from agentic_synth.providers._base import Provider
from agentic_synth.providers.openai import OpenAIProvider, chat_completions_url

KEY = "sk-test-OPENAIKEY0123456789"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Scripted:
    """A loopback server whose ``/v1/chat/completions`` runs the current ``handler``."""

    def __init__(self) -> None:
        self.handler: Handler = _ok_handler
        self.seen: list[tuple[dict[str, Any], dict[str, str]]] = []
        self.disconnects = 0
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._dispatch)
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
        return str(self.server.make_url("/v1"))


async def _ok_handler(request: web.Request) -> web.StreamResponse:
    return web.json_response(
        {
            "id": "c1",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "hi there"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13},
        },
        headers={
            "x-request-id": "req_9",
            "X-RateLimit-Remaining-Requests": "99",
            "x-ratelimit-reset-tokens": "6ms",
        },
    )


def sse(*payloads: Any) -> bytes:
    out = b""
    for p in payloads:
        out += b"data: " + (p if isinstance(p, bytes) else json.dumps(p).encode()) + b"\n\n"
    return out


def chunk(content: str | None = None, finish: str | None = None) -> dict[str, Any]:
    delta = {} if content is None else {"content": content}
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def streaming(*parts: bytes, pause: float = 0.0, close: bool = False) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "x-request-id": "req_s",
                "retry-after-ms": "5",
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


@pytest.fixture
async def scripted() -> AsyncIterator[Scripted]:
    s = Scripted()
    await s.server.start_server()
    yield s
    await s.server.close()


@pytest.fixture
async def provider(scripted: Scripted) -> AsyncIterator[OpenAIProvider]:
    spec = ModelSpec("openai", "gpt-x", base_url=scripted.url, api_key=KEY, timeout=5.0)
    p = openai_provider.create(spec, max_connections=8)
    yield p
    await p.aclose()


def req(**kw: Any) -> Request:
    return Request(messages=[{"role": "user", "content": "hello"}], max_tokens=32, **kw)


async def collect(provider: OpenAIProvider, request: Request) -> list[Any]:
    return [e async for e in provider.stream("gpt-x", request)]


def test_url_joining() -> None:
    assert str(chat_completions_url(None)) == "https://api.openai.com/v1/chat/completions"
    assert str(chat_completions_url("http://h:8000")) == "http://h:8000/v1/chat/completions"
    assert str(chat_completions_url("http://h:8000/v1/")) == "http://h:8000/v1/chat/completions"
    assert (
        str(chat_completions_url("https://openrouter.ai/api/v1"))
        == "https://openrouter.ai/api/v1/chat/completions"
    )
    with pytest.raises(ConfigurationError):
        chat_completions_url("localhost:8000")


async def test_complete_maps_request_and_response(
    scripted: Scripted, provider: OpenAIProvider
) -> None:
    assert isinstance(provider, Provider)
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    out = await provider.complete(
        "gpt-x",
        req(
            system="be brief",
            temperature=0.5,
            top_p=0.9,
            stop=("END",),
            json_schema=schema,
            extra={"seed": 3, "temperature": 0.1},
        ),
    )
    body, headers = scripted.seen[0]
    assert body == {
        "model": "gpt-x",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello"},
        ],
        "max_tokens": 32,
        "temperature": 0.1,
        "top_p": 0.9,
        "stop": ["END"],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": schema, "strict": True},
        },
        "seed": 3,
    }
    assert headers["Authorization"] == f"Bearer {KEY}"
    assert (out.text, out.finish_reason, out.request_id) == ("hi there", "stop", "req_9")
    assert (out.usage.input_tokens, out.usage.output_tokens) == (11, 2)
    assert out.headers == {
        "x-ratelimit-remaining-requests": "99",
        "x-ratelimit-reset-tokens": "6ms",
    }


async def test_no_key_no_authorization_and_max_completion_tokens(scripted: Scripted) -> None:
    p = OpenAIProvider(base_url=scripted.url, api_key=None, timeout=5, max_connections=2)
    try:
        await p.complete("m", req(extra={"max_completion_tokens": 9}))
    finally:
        await p.aclose()
    body, headers = scripted.seen[0]
    assert "Authorization" not in headers
    assert "max_tokens" not in body and body["max_completion_tokens"] == 9


async def test_stream_split_events_usage_and_done(
    scripted: Scripted, provider: OpenAIProvider
) -> None:
    wire = sse(
        chunk("Hel"),
        chunk("lo"),
        chunk(None, "length"),
        {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}},
        b"[DONE]",
    )
    wire = b": keep-alive\r\n\r\n" + wire.replace(b"\n", b"\r\n")
    # Cut the wire at awkward places, including inside a CRLF and inside JSON.
    cuts = [3, 17, 18, 40, 41, 90, len(wire) - 3]
    parts = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
    scripted.handler = streaming(*parts, pause=0.001)
    events = await collect(provider, req())
    body, _ = scripted.seen[0]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert events[:2] == [TextDelta("Hel"), TextDelta("lo")]
    end = events[-1]
    assert len(events) == 3 and isinstance(end, ProviderStreamEnd)
    assert (end.finish_reason, end.usage.input_tokens, end.usage.output_tokens) == ("length", 5, 2)
    assert end.request_id == "req_s" and end.headers == {"retry-after-ms": "5"}


async def test_stream_answered_with_plain_json(
    scripted: Scripted, provider: OpenAIProvider
) -> None:
    events = await collect(provider, req())
    assert events[0] == TextDelta("hi there")
    assert isinstance(events[1], ProviderStreamEnd) and events[1].usage.output_tokens == 2


@pytest.mark.parametrize(
    ("status", "body", "headers", "cls", "retry_after"),
    [
        (
            429,
            {"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}},
            {"retry-after-ms": "250"},
            RateLimitedError,
            0.25,
        ),
        (429, {"error": {"message": "x"}}, {"retry-after": "3"}, RateLimitedError, 3.0),
        (
            529,
            {"error": {"type": "overloaded_error", "message": "busy"}},
            None,
            OverloadedError,
            None,
        ),
        (500, "Internal Server Error", None, ServerError, None),
        (503, {"error": "model loading"}, None, ServerError, None),
        (
            400,
            {"object": "error", "message": "bad max_tokens", "type": "BadRequestError"},
            None,
            BadRequestError,
            None,
        ),
        (404, {"error": {"message": "no such model"}}, None, BadRequestError, None),
        (
            401,
            {"error": {"message": f"Incorrect API key provided: {KEY}"}},
            None,
            AuthenticationError,
            None,
        ),
    ],
)
async def test_status_errors(
    scripted: Scripted,
    provider: OpenAIProvider,
    status: int,
    body: Any,
    headers: dict[str, str] | None,
    cls: type[ProviderError],
    retry_after: float | None,
) -> None:
    scripted.handler = error(status, body, headers)
    for call in (lambda: provider.complete("gpt-x", req()), lambda: collect(provider, req())):
        with pytest.raises(cls) as info:
            await call()
        exc = info.value
        assert exc.status == status and exc.retry_after == retry_after and exc.model == "gpt-x"
        assert_no_key(exc)
        assert f"HTTP {status}" in str(exc)


async def test_error_message_carries_server_text(
    scripted: Scripted, provider: OpenAIProvider
) -> None:
    scripted.handler = error(
        400,
        {"error": {"message": "max_tokens is too large"}},
        {"x-should-retry": "true", "x-request-id": "req_e"},
    )
    with pytest.raises(BadRequestError) as info:
        await provider.complete("gpt-x", req())
    assert "max_tokens is too large" in str(info.value)
    assert info.value.retryable is True and info.value.request_id == "req_e"


async def test_timeout_and_per_request_override(scripted: Scripted) -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.5)
        return await _ok_handler(request)

    scripted.handler = slow
    p = OpenAIProvider(base_url=scripted.url, api_key=KEY, timeout=0.05, max_connections=2)
    try:
        with pytest.raises(APITimeoutError):
            await p.complete("m", req())
        with pytest.raises(APITimeoutError):
            await collect(p, req())  # type: ignore[arg-type]
        out = await p.complete("m", req(timeout=3.0))
        assert out.text == "hi there"
    finally:
        await p.aclose()


async def test_reset_malformed_and_truncated(scripted: Scripted, provider: OpenAIProvider) -> None:
    async def reset(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()
        await asyncio.sleep(0.05)
        return web.Response()

    scripted.handler = reset
    with pytest.raises(APIConnectionError):
        await provider.complete("gpt-x", req())
    scripted.handler = error(200, '{"choices": [{"message": ')
    with pytest.raises(APIConnectionError, match="malformed"):
        await provider.complete("gpt-x", req())
    scripted.handler = error(200, '{"choices": []}')
    with pytest.raises(APIConnectionError, match="malformed"):
        await provider.complete("gpt-x", req())
    scripted.handler = streaming(sse(chunk("a")), b'data: {"choi\n\n')
    with pytest.raises(APIConnectionError, match="malformed"):
        await collect(provider, req())
    # No [DONE] and no finish_reason: the answer was cut off.
    scripted.handler = streaming(sse(chunk("a"), chunk("b")))
    with pytest.raises(APIConnectionError, match="ended before"):
        await collect(provider, req())
    scripted.handler = streaming(sse(chunk("a")), b'data: {"cho', close=True)
    with pytest.raises(APIConnectionError):
        await collect(provider, req())


async def test_error_payload_inside_200_stream(
    scripted: Scripted, provider: OpenAIProvider
) -> None:
    scripted.handler = streaming(
        sse(chunk("partial"), {"error": {"type": "overloaded_error", "message": "busy"}})
    )
    seen: list[Any] = []
    with pytest.raises(OverloadedError, match="busy"):
        async for event in provider.stream("gpt-x", req()):
            seen.append(event)
    assert seen == [TextDelta("partial")]
    scripted.handler = streaming(sse({"error": {"message": "rate", "code": 429}}))
    with pytest.raises(RateLimitedError):
        await collect(provider, req())


async def test_early_close_drops_the_connection_at_once(
    scripted: Scripted, provider: OpenAIProvider
) -> None:
    scripted.handler = streaming(*[sse(chunk(f"t{i}")) for i in range(200)], pause=0.01)
    stream = provider.stream("gpt-x", req())
    first = await anext(stream)  # type: ignore[call-overload]
    assert first == TextDelta("t0")
    await stream.aclose()  # type: ignore[attr-defined]
    for _ in range(100):
        if scripted.disconnects:
            break
        await asyncio.sleep(0.01)
    assert scripted.disconnects == 1


async def test_cancellation_drops_the_connection(
    scripted: Scripted, provider: OpenAIProvider
) -> None:
    scripted.handler = streaming(*[sse(chunk(f"t{i}")) for i in range(200)], pause=0.01)
    got = asyncio.Event()

    async def consume() -> None:
        async for _ in provider.stream("gpt-x", req()):
            got.set()

    task = asyncio.create_task(consume())
    await got.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(100):
        if scripted.disconnects:
            break
        await asyncio.sleep(0.01)
    assert scripted.disconnects == 1


async def test_connection_refused_is_connection_error() -> None:
    p = OpenAIProvider(base_url="http://127.0.0.1:9", api_key=KEY, timeout=2, max_connections=1)
    try:
        with pytest.raises(APIConnectionError) as info:
            await p.complete("m", req())
    finally:
        await p.aclose()
    assert_no_key(info.value)


def test_repr_hides_key() -> None:
    p = OpenAIProvider(base_url="http://h:1/v1", api_key=KEY, timeout=1, max_connections=1)
    assert KEY not in repr(p) and "h:1" in repr(p)


def assert_no_key(exc: BaseException) -> None:
    text = "".join(traceback.format_exception(exc))
    for item in (str(exc), repr(exc), text, repr(exc.__cause__), str(exc.__cause__)):
        assert KEY not in item
