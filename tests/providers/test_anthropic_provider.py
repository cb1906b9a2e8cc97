"""The Anthropic provider (official SDK) against scripted loopback handlers."""

from __future__ import annotations

import asyncio
import json
import traceback
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
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
    PermissionDeniedError,
    ProviderError,
    RateLimitedError,
    ServerError,
)
from agentic_synth._spec import ModelSpec
from agentic_synth._types import ProviderStreamEnd, Request, TextDelta
from agentic_synth.providers import anthropic as anthropic_provider
from agentic_synth.providers._base import Provider
from agentic_synth.providers.anthropic import AnthropicProvider, schema_instruction
from agentic_synth.simulator import MockServer, SimConfig

KEY = "sk-ant-test-ANTHROPICKEY0123456789"


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
    return sse_handler(
        parts,
        headers={"request-id": "req_s", "anthropic-ratelimit-tokens-remaining": "900"},
        pause=pause,
        close=close,
    )


def api_error(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


@pytest.fixture
async def scripted() -> AsyncIterator[Scripted]:
    s = Scripted("/v1/messages", _ok_handler)
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
    kw.setdefault("max_tokens", 32)
    return Request(messages=[{"role": "user", "content": "hello"}], **kw)


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


async def test_native_schema_mode_uses_output_config(scripted: Scripted) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    spec = ModelSpec(
        "anthropic", "m", base_url=scripted.url, api_key=KEY, options={"json_schema_mode": "native"}
    )
    p = anthropic_provider.create(spec, max_connections=1)
    try:
        await p.complete(
            "m", req(system="terse", json_schema=schema, extra={"output_config": {"effort": "low"}})
        )
    finally:
        await p.aclose()
    body = scripted.seen[0][0]
    assert body["system"] == "terse"
    assert body["output_config"] == {
        "effort": "low",
        "format": {"type": "json_schema", "schema": schema},
    }


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
        (404, api_error("not_found_error", "model: claude-x"), None, NotFoundError, None),
        (413, api_error("request_too_large", "big"), None, BadRequestError, None),
        (422, api_error("invalid_request_error", "bad"), None, BadRequestError, None),
        (
            401,
            api_error("authentication_error", f"invalid x-api-key {KEY}"),
            None,
            AuthenticationError,
            None,
        ),
        (403, api_error("permission_error", "no"), None, PermissionDeniedError, None),
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


async def test_should_retry_header_is_reported_not_applied(
    scripted: Scripted, provider: AnthropicProvider
) -> None:
    # The router's failure policy weighs the server's verdict; the class keeps its default.
    scripted.handler = error(500, api_error("api_error", "x"), {"x-should-retry": "false"})
    with pytest.raises(ServerError) as info:
        await provider.complete("claude-x", req())
    assert info.value.should_retry is False and info.value.retryable is True
    scripted.handler = error(
        400, api_error("invalid_request_error", "x"), {"x-should-retry": "true"}
    )
    with pytest.raises(BadRequestError) as info2:
        await provider.complete("claude-x", req())
    assert info2.value.should_retry is True and info2.value.retryable is False


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
        with pytest.raises(APITimeoutError, match="in time"):
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
    # Chained to what failed underneath the SDK (aiohttp's error), not its "Connection error."
    assert isinstance(info.value.__cause__, aiohttp.ServerDisconnectedError)
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


# ----------------------------------------------------------------- end to end: MockServer


def sim_provider(
    server: MockServer, *, key: str = KEY, timeout: float = 5.0, **options: Any
) -> AnthropicProvider:
    spec = ModelSpec(
        "anthropic", "sim-1", base_url=server.url, api_key=key, timeout=timeout, options=options
    )
    return anthropic_provider.create(spec, max_connections=4)


async def test_e2e_complete_and_stream() -> None:
    async with MockServer(SimConfig(seed=1), api_key=KEY) as server:
        p = sim_provider(server)
        try:
            events = await collect(p, req(stop=("zzz",)))
            out = await p.complete("sim-1", req())
        finally:
            await p.aclose()
    assert out.text and out.finish_reason in ("end_turn", "max_tokens")
    assert out.usage.input_tokens > 0 and out.usage.output_tokens > 0
    assert out.request_id and out.request_id.startswith("req_sim_")
    assert out.headers and any(h.startswith("anthropic-ratelimit-") for h in out.headers)
    deltas, end = events[:-1], events[-1]
    assert deltas and all(isinstance(d, TextDelta) and d.text for d in deltas)
    assert isinstance(end, ProviderStreamEnd) and end.finish_reason in ("end_turn", "max_tokens")
    assert end.usage.input_tokens > 0 and end.usage.output_tokens > 0
    assert end.request_id and end.headers
    assert server.stats.streams_completed == 1 and server.stats.streams_aborted == 0
    # A stream read to its end hands its connection back to the pool for the next call.
    assert server.stats.connections_total == 1


async def test_e2e_native_json_schema() -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    async with MockServer() as server:
        p = sim_provider(server, json_schema_mode="native")
        try:
            out = await p.complete("sim-1", req(json_schema=schema, max_tokens=200))
        finally:
            await p.aclose()
    value = json.loads(out.text)
    assert isinstance(value["name"], str) and isinstance(value["age"], int)


def test_bad_json_schema_mode_is_a_configuration_error() -> None:
    spec = ModelSpec("anthropic", "m", api_key=KEY, options={"json_schema_mode": "strict"})
    with pytest.raises(ConfigurationError, match="json_schema_mode"):
        anthropic_provider.create(spec, max_connections=1)


@pytest.mark.parametrize(
    ("kind", "cls", "status"),
    [
        ("429", RateLimitedError, 429),
        ("500", ServerError, 500),
        ("529", OverloadedError, 529),
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
        assert sum(server.stats.requests.values()) == 2  # no hidden SDK retries


async def test_e2e_error_event_in_200_stream() -> None:
    async with MockServer(SimConfig(fail_first_n=1, fail_first_kind="stream_error")) as server:
        p = sim_provider(server)
        try:
            with pytest.raises(OverloadedError) as info:
                await collect(p, req(max_tokens=200))
            assert info.value.request_id and info.value.request_id.startswith("req_sim_")
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
            assert isinstance(await anext(stream), TextDelta)  # type: ignore[call-overload]
            await stream.aclose()  # type: ignore[attr-defined]
            for _ in range(100):
                if server.stats.streams_aborted:
                    break
                await asyncio.sleep(0.01)
            assert server.stats.streams_aborted == 1
            assert server.stats.streams_completed == 0
        finally:
            await p.aclose()


async def test_e2e_auth_error_never_shows_the_key() -> None:
    async with MockServer(api_key="sk-ant-right-key-0000") as server:
        p = sim_provider(server)
        try:
            for call in (lambda: p.complete("sim-1", req()), lambda: collect(p, req())):
                with pytest.raises(AuthenticationError) as info:
                    await call()
                assert info.value.status == 401 and not info.value.retryable
                assert_no_key(info.value)
        finally:
            await p.aclose()


def held_open(wire: bytes, *, hold: float) -> Handler:
    """Send the whole stream, then wait before ending the body."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(wire)
        await asyncio.sleep(hold)
        await resp.write_eof()
        return resp

    return handler


async def test_stream_body_ending_late_still_reuses_the_connection(
    scripted: Scripted, provider: AnthropicProvider
) -> None:
    scripted.handler = held_open(START + BLOCK + delta("a") + END, hold=0.05)
    for _ in range(2):
        events = await collect(provider, req())
        assert events[-1].finish_reason == "max_tokens"
    assert len(scripted.peers) == 1 and scripted.disconnects == 0


async def test_stream_body_never_ending_after_message_stop_is_dropped(
    scripted: Scripted, provider: AnthropicProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(anthropic_provider, "DRAIN_SECONDS", 0.05)
    scripted.handler = held_open(START + BLOCK + delta("a") + END, hold=30)
    with anyio.fail_after(10):  # a guard only: without the drain bound this waits 30 s
        events = await collect(provider, req())
    assert events[0] == TextDelta("a") and events[-1].finish_reason == "max_tokens"
    for _ in range(200):
        if scripted.disconnects:
            break
        await asyncio.sleep(0.01)
    assert scripted.disconnects == 1


async def test_a_stuck_close_does_not_hold_an_early_exit(
    scripted: Scripted, provider: AnthropicProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Cleanup in ``finally`` is shielded from cancellation but bounded in time.
    async def stuck(self: Any) -> None:
        await anyio.sleep(30)

    monkeypatch.setattr(anthropic_provider, "CLOSE_SECONDS", 0.1)
    monkeypatch.setattr(anthropic.AsyncStream, "close", stuck)
    scripted.handler = streaming(START, BLOCK, *[delta(f"t{i}") for i in range(200)], pause=0.01)
    stream = provider.stream("claude-x", req())
    assert isinstance(await anext(stream), TextDelta)  # type: ignore[call-overload]
    closing = asyncio.create_task(stream.aclose())  # type: ignore[attr-defined]
    # A guard, not a timing: a shield without a bound would hold this for 30 s
    # (and a fail_after around it could not cut through the shield).
    done, _ = await asyncio.wait({closing}, timeout=5)
    assert closing in done

    got = asyncio.Event()

    async def consume() -> None:
        async for _ in provider.stream("claude-x", req()):
            got.set()

    task = asyncio.create_task(consume())
    await got.wait()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)
    assert task in done and task.cancelled()
