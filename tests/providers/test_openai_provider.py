"""The OpenAI-compatible provider against scripted loopback handlers (exact wire control).

Every test runs on both transports (``lean`` and ``aiohttp``): the ``transport``
fixture sets the default each provider built in the test picks up.
"""

from __future__ import annotations

import asyncio
import json
import traceback
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest
from aiohttp import web
from scripted_server import Handler, error, sse_handler
from scripted_server import ScriptedServer as Scripted

from agentic_synth._exceptions import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    NotFoundError,
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
from agentic_synth.simulator import MockServer, SimConfig

KEY = "sk-test-OPENAIKEY0123456789"


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
    return sse_handler(
        parts, headers={"x-request-id": "req_s", "retry-after-ms": "5"}, pause=pause, close=close
    )


@pytest.fixture(autouse=True, params=openai_provider.TRANSPORTS)
def transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    name: str = request.param
    monkeypatch.setattr(openai_provider, "DEFAULT_TRANSPORT", name)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    return name


@pytest.fixture
async def scripted() -> AsyncIterator[Scripted]:
    s = Scripted("/v1/chat/completions", _ok_handler, url_path="/v1")
    await s.server.start_server()
    yield s
    await s.server.close()


@pytest.fixture
async def provider(scripted: Scripted) -> AsyncIterator[OpenAIProvider]:
    spec = ModelSpec("openai", "gpt-x", base_url=scripted.url, api_key=KEY, timeout=5.0)
    p = openai_provider.create(spec, max_connections=8)
    assert p.transport == openai_provider.DEFAULT_TRANSPORT
    yield p
    await p.aclose()


def req(**kw: Any) -> Request:
    kw.setdefault("max_tokens", 32)
    return Request(messages=[{"role": "user", "content": "hello"}], **kw)


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
    # Not strict-eligible (no additionalProperties: false, "a" not required): strict false.
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
            "json_schema": {"name": "output", "schema": schema, "strict": False},
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
        (404, {"error": {"message": "no such model"}}, None, NotFoundError, None),
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
    # The server's verdict is reported for the router's policy; the class keeps its default.
    assert info.value.should_retry is True and info.value.retryable is False
    assert info.value.request_id == "req_e"


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


def test_repr_hides_key(transport: str) -> None:
    p = OpenAIProvider(base_url="http://h:1/v1", api_key=KEY, timeout=1, max_connections=1)
    assert KEY not in repr(p) and "h:1" in repr(p) and transport in repr(p)


def test_transport_option_is_validated_and_used(transport: str) -> None:
    spec = ModelSpec("openai", "m", base_url="http://h:1/v1", options={"transport": transport})
    openai_provider.validate(spec)
    other = "aiohttp" if transport == "lean" else "lean"
    chosen = ModelSpec("openai", "m", base_url="http://h:1/v1", options={"transport": other})
    assert openai_provider.create(chosen, max_connections=1).transport == other
    bad = ModelSpec("openai", "m", base_url="http://h:1/v1", options={"transport": "httpx"})
    with pytest.raises(ConfigurationError, match="'lean', 'aiohttp'"):
        openai_provider.validate(bad)


@pytest.mark.parametrize("var", ["HTTPS_PROXY", "ALL_PROXY", "https_proxy"])
def test_proxy_environment_selects_aiohttp(
    transport: str, var: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.setenv(var, "http://proxy.internal:3128")
    remote = OpenAIProvider(
        base_url="https://api.example.com/v1", api_key=KEY, timeout=1, max_connections=1
    )
    assert remote.transport == "aiohttp"
    # Loopback never goes through a proxy; an explicit choice always wins.
    local = OpenAIProvider(
        base_url="http://127.0.0.1:1/v1", api_key=KEY, timeout=1, max_connections=1
    )
    assert local.transport == transport
    spec = ModelSpec(
        "openai", "m", base_url="https://api.example.com/v1", options={"transport": "lean"}
    )
    assert openai_provider.create(spec, max_connections=1).transport == "lean"


def assert_no_key(exc: BaseException) -> None:
    text = "".join(traceback.format_exception(exc))
    for item in (str(exc), repr(exc), text, repr(exc.__cause__), str(exc.__cause__)):
        assert KEY not in item


# ----------------------------------------------------------------- end to end: MockServer


def sim_provider(server: MockServer, *, key: str | None = KEY, timeout: float = 5.0) -> Any:
    spec = ModelSpec("openai", "sim-1", base_url=server.url, api_key=key, timeout=timeout)
    return openai_provider.create(spec, max_connections=4)


async def test_e2e_complete_and_stream() -> None:
    async with MockServer(SimConfig(seed=1), api_key=KEY) as server:
        p = sim_provider(server)
        try:
            events = await collect(p, req(stop=("zzz",)))
            out = await p.complete("sim-1", req())
        finally:
            await p.aclose()
    assert out.text and out.finish_reason in ("stop", "length")
    assert out.usage.input_tokens > 0 and out.usage.output_tokens > 0
    assert out.request_id and out.request_id.startswith("req_sim_")
    assert out.headers and "x-ratelimit-remaining-requests" in out.headers
    deltas, end = events[:-1], events[-1]
    assert deltas and all(isinstance(d, TextDelta) and d.text for d in deltas)
    assert isinstance(end, ProviderStreamEnd) and end.finish_reason in ("stop", "length")
    assert end.usage.output_tokens > 0 and end.request_id and end.headers
    assert server.stats.streams_completed == 1 and server.stats.streams_aborted == 0
    # A stream read to its end hands its connection back to the pool for the next call.
    assert server.stats.connections_total == 1


async def test_e2e_json_schema() -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    async with MockServer() as server:
        p = sim_provider(server, key=None)
        try:
            out = await p.complete("sim-1", req(json_schema=schema, max_tokens=200))
        finally:
            await p.aclose()
    value = json.loads(out.text)
    assert isinstance(value["name"], str) and isinstance(value["age"], int)


@pytest.mark.parametrize(
    ("kind", "cls", "status"),
    [
        ("429", RateLimitedError, 429),
        ("500", ServerError, 500),
        ("529", OverloadedError, 503),  # OpenAI-style overload: 503 with code "overloaded"
        ("reset", APIConnectionError, None),
        ("malformed", APIConnectionError, None),
        ("truncate", APIConnectionError, None),
    ],
)
@pytest.mark.parametrize("streamed", [False, True])
async def test_e2e_faults(
    kind: str, cls: type[ProviderError], status: int | None, streamed: bool
) -> None:
    config = SimConfig(fail_first_n=1, fail_first_kind=kind, retry_after=0.25)
    async with MockServer(config) as server:
        p = sim_provider(server)
        try:
            call = (lambda: collect(p, req())) if streamed else (lambda: p.complete("sim-1", req()))
            with pytest.raises(cls) as info:
                await call()
            assert type(info.value) is cls and info.value.status == status
            if kind == "429":
                assert info.value.retry_after == 0.25
            assert_no_key(info.value)
            await call()  # the next one is served
        finally:
            await p.aclose()


async def test_e2e_error_event_in_200_stream() -> None:
    async with MockServer(SimConfig(fail_first_n=1, fail_first_kind="stream_error")) as server:
        p = sim_provider(server)
        try:
            with pytest.raises(OverloadedError):
                await collect(p, req(max_tokens=200))
        finally:
            await p.aclose()


async def test_e2e_timeout_hang() -> None:
    config = SimConfig(fail_first_n=2, fail_first_kind="timeout", hang=5.0)
    async with MockServer(config) as server:
        p = sim_provider(server, timeout=0.2)
        try:
            with pytest.raises(APITimeoutError):
                await p.complete("sim-1", req())
            with pytest.raises(APITimeoutError):
                await collect(p, req())
        finally:
            await p.aclose()


async def test_e2e_early_close_aborts_the_stream_on_the_server() -> None:
    config = SimConfig(tokens_per_s=200.0, output_tokens=400)
    async with MockServer(config) as server:
        p = sim_provider(server)
        try:
            stream = p.stream("sim-1", req(max_tokens=1000))
            assert isinstance(await anext(stream), TextDelta)
            await stream.aclose()
            for _ in range(100):
                if server.stats.streams_aborted:
                    break
                await asyncio.sleep(0.01)
            assert server.stats.streams_aborted == 1
            assert server.stats.streams_completed == 0
        finally:
            await p.aclose()


async def test_e2e_auth_error_never_shows_the_key() -> None:
    async with MockServer(api_key="sk-right-key-000000") as server:
        p = sim_provider(server)
        try:
            for call in (lambda: p.complete("sim-1", req()), lambda: collect(p, req())):
                with pytest.raises(AuthenticationError) as info:
                    await call()
                assert info.value.status == 401 and not info.value.retryable
                assert_no_key(info.value)
        finally:
            await p.aclose()


def held_open(wire: bytes, *, hold: float, tail_pause: float = 0.0) -> Handler:
    """Send the whole stream, then wait before (or instead of) ending the body."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(wire)
        await asyncio.sleep(hold)
        await resp.write_eof()
        return resp

    return handler


async def test_stream_body_ending_late_still_reuses_the_connection(
    scripted: Scripted, provider: OpenAIProvider
) -> None:
    scripted.handler = held_open(sse(chunk("a", "stop"), b"[DONE]"), hold=0.05)
    for _ in range(2):
        events = await collect(provider, req())
        assert events[-1].finish_reason == "stop"
    assert len(scripted.peers) == 1 and scripted.disconnects == 0


async def test_stream_body_never_ending_after_done_is_dropped(
    scripted: Scripted, provider: OpenAIProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(openai_provider, "DRAIN_SECONDS", 0.05)
    scripted.handler = held_open(sse(chunk("a", "stop"), b"[DONE]"), hold=30)
    with anyio.fail_after(10):  # a guard only: without the drain bound this waits 30 s
        events = await collect(provider, req())
    assert events == [TextDelta("a"), events[-1]] and events[-1].finish_reason == "stop"
    await wait_for(lambda: scripted.disconnects == 1)


async def wait_for(condition: Callable[[], bool]) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met")
