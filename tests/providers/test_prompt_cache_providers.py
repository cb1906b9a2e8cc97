"""Prompt caching in the providers: golden request bodies, usage fields, the warm-up
gate against the mock server (anthropic SDK path, openai provider, in-process sim)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from aiohttp import web
from scripted_server import ScriptedServer as Scripted

from agentic_synth._exceptions import ServerError
from agentic_synth._spec import ModelSpec
from agentic_synth._types import ProviderResponse, ProviderStreamEnd, Request, TextDelta, Usage
from agentic_synth.providers import anthropic as anthropic_provider
from agentic_synth.providers import openai as openai_provider
from agentic_synth.providers._prompt_cache import EXTENDED_TTL_BETA
from agentic_synth.providers.sim import SimProvider
from agentic_synth.simulator import MockServer, SimConfig

KEY = "sk-ant-test-PROMPTCACHE0123456789"
MODEL = "claude-sonnet-4-5"
#: 2,400 distinct-ish words, ~3,000 estimated tokens: over every minimum but Haiku 4.5's.
SYSTEM = " ".join(f"rule{i % 97}-{i % 13}" for i in range(1200))
SHOTS = ("Example input: " + "lorem " * 700, "Example output: " + "ipsum " * 700)


def req(text: str = "item 0", *, system: str | None = SYSTEM, **kw: Any) -> Request:
    kw.setdefault("max_tokens", 32)
    return Request(messages=[{"role": "user", "content": text}], system=system, **kw)


def fewshot(text: str) -> Request:
    messages: Any = [
        {"role": "user", "content": SHOTS[0]},
        {"role": "assistant", "content": SHOTS[1]},
        {"role": "user", "content": text},
    ]
    return Request(messages=messages, max_tokens=32, system="Be brief.")


# ------------------------------------------------------------- anthropic: golden bodies

USAGE = {
    "input_tokens": 10,
    "cache_creation_input_tokens": 3,
    "cache_read_input_tokens": 4,
    "output_tokens": 5,
}
MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": MODEL,
    "content": [{"type": "text", "text": "Hello"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": USAGE,
}


def event(name: str, payload: Any) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + json.dumps(payload).encode() + b"\n\n"


def sse_message(delta_usage: dict[str, Any]) -> bytes:
    start = {**MESSAGE, "content": [], "stop_reason": None, "usage": {**USAGE, "output_tokens": 1}}
    return (
        event("message_start", {"type": "message_start", "message": start})
        + event(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        )
        + event(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Hi"},
            },
        )
        + event("content_block_stop", {"type": "content_block_stop", "index": 0})
        + event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": delta_usage,
            },
        )
        + event("message_stop", {"type": "message_stop"})
    )


def anthropic_handler(delta_usage: dict[str, Any]) -> Any:
    """JSON for plain calls, an event stream for ``"stream": true`` ones."""

    async def handler(request: web.Request) -> web.StreamResponse:
        if not json.loads(await request.read()).get("stream"):
            return web.json_response(MESSAGE, headers={"request-id": "req_a"})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(sse_message(delta_usage))
        await resp.write_eof()
        return resp

    return handler


@pytest.fixture
async def scripted() -> AsyncIterator[Scripted]:
    s = Scripted("/v1/messages", anthropic_handler({"output_tokens": 5}))
    await s.server.start_server()
    yield s
    await s.server.close()


def anthropic(url: str, **options: Any) -> anthropic_provider.AnthropicProvider:
    spec = ModelSpec("anthropic", MODEL, base_url=url, api_key=KEY, timeout=10.0, options=options)
    return anthropic_provider.create(spec, max_connections=8)


def marked(text: str, ttl: str | None = None) -> list[dict[str, Any]]:
    mark = {"type": "ephemeral"} if ttl is None else {"type": "ephemeral", "ttl": ttl}
    return [{"type": "text", "text": text, "cache_control": mark}]


async def test_anthropic_golden_bodies(scripted: Scripted) -> None:
    p = anthropic(scripted.url)
    try:
        first = await p.complete(MODEL, req("item 0"))
        second = await p.complete(MODEL, req("item 1"))
    finally:
        await p.aclose()
    (warm_up, warm_headers), (follower, _) = scripted.seen
    # The warm-up goes as a stream (so the group may go at its first event).
    assert warm_up == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "item 0"}],
        "max_tokens": 32,
        "system": marked(SYSTEM),
        "stream": True,
    }
    assert "anthropic-beta" not in {k.lower() for k in warm_headers}
    assert follower == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "item 1"}],
        "max_tokens": 32,
        "system": marked(SYSTEM),
    }
    assert first.text == "Hi" and second.text == "Hello"
    assert first.usage == second.usage == Usage(17, 5, 3, 4)


async def test_anthropic_few_shot_turns_marked_from_the_second_request(
    scripted: Scripted,
) -> None:
    p = anthropic(scripted.url)
    try:
        await p.complete(MODEL, fewshot("input 1"))
        await p.complete(MODEL, fewshot("input 2"))
    finally:
        await p.aclose()
    (first, _), (second, _) = scripted.seen
    assert first == {
        "model": MODEL,
        "messages": [
            {"role": "user", "content": SHOTS[0]},
            {"role": "assistant", "content": SHOTS[1]},
            {"role": "user", "content": "input 1"},
        ],
        "max_tokens": 32,
        "system": "Be brief.",
    }
    assert second == {
        "model": MODEL,
        "messages": [
            {"role": "user", "content": SHOTS[0]},
            {"role": "assistant", "content": marked(SHOTS[1])},
            {"role": "user", "content": "input 2"},
        ],
        "max_tokens": 32,
        "system": "Be brief.",
        "stream": True,
    }


async def test_anthropic_one_hour_ttl_sends_the_beta_header(scripted: Scripted) -> None:
    spec = ModelSpec(
        "anthropic",
        MODEL,
        base_url=scripted.url,
        api_key=KEY,
        options={"prompt_cache": "1h", "headers": {"anthropic-beta": "my-beta-1"}},
    )
    p = anthropic_provider.create(spec, max_connections=2)
    try:
        await p.complete(MODEL, fewshot("input 1"))
        await p.complete(MODEL, fewshot("input 2"))
    finally:
        await p.aclose()
    (_, first_headers), (second, headers) = scripted.seen
    assert first_headers["anthropic-beta"] == "my-beta-1"  # nothing marked: none added
    assert second["messages"][1]["content"] == marked(SHOTS[1], "1h")
    assert headers["anthropic-beta"] == f"my-beta-1,{EXTENDED_TTL_BETA}"


@pytest.mark.parametrize(
    ("options", "extra"),
    [
        ({"prompt_cache": False}, None),
        ({}, {"cache_control": {"type": "ephemeral"}}),  # the caller's own automatic caching
        ({}, {"system": [{"type": "text", "text": "own"}]}),
        ({"prompt_cache_min_tokens": 100_000}, None),
    ],
    ids=["off", "own cache_control", "own system", "below the minimum"],
)
async def test_anthropic_steps_aside(
    scripted: Scripted, options: dict[str, Any], extra: dict[str, Any] | None
) -> None:
    p = anthropic(scripted.url, **options)
    try:
        await p.complete(MODEL, req(extra=extra))
    finally:
        await p.aclose()
    body, _ = scripted.seen[0]
    assert "stream" not in body
    assert body["system"] == (extra or {}).get("system", SYSTEM)
    assert body.get("cache_control") == (extra or {}).get("cache_control")


async def test_anthropic_native_schemas_are_separate_groups(scripted: Scripted) -> None:
    p = anthropic(scripted.url, json_schema_mode="native")
    one = {"type": "object", "properties": {"a": {"type": "string"}}}
    two = {"type": "object", "properties": {"b": {"type": "string"}}}
    try:
        await p.complete(MODEL, req(json_schema=one))
        await p.complete(MODEL, req(json_schema=one))
        await p.complete(MODEL, req(json_schema=two))
    finally:
        await p.aclose()
    streamed = [body.get("stream", False) for body, _ in scripted.seen]
    assert streamed == [True, False, True]  # another schema is another prefix: warmed up anew


@pytest.mark.parametrize(
    "delta_usage",
    [
        {"output_tokens": 5},  # older API versions: output tokens only
        {**USAGE, "output_tokens": 5},  # newer: the whole usage again
    ],
    ids=["output only", "whole usage"],
)
async def test_anthropic_stream_usage_keeps_cache_fields(delta_usage: dict[str, Any]) -> None:
    s = Scripted("/v1/messages", anthropic_handler(delta_usage))
    await s.server.start_server()
    p = anthropic(s.url)
    try:
        events = [e async for e in p.stream(MODEL, req(system=None))]
    finally:
        await p.aclose()
        await s.server.close()
    end = events[-1]
    assert isinstance(end, ProviderStreamEnd)
    assert end.usage == Usage(17, 5, 3, 4)


# ----------------------------------------------------- anthropic: the gate, end to end


async def many(provider: Any, model: str, n: int, **kw: Any) -> list[Any]:
    out: list[Any] = [None] * n

    async def one(i: int) -> None:
        try:
            out[i] = await provider.complete(model, req(f"item {i}", **kw))
        except Exception as exc:
            out[i] = exc

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)
    return out


async def test_anthropic_warm_up_then_reads_on_the_mock_server() -> None:
    async with MockServer(SimConfig(seed=3, latency="0.05"), api_key=KEY) as server:
        p = anthropic(server.url)
        try:
            results = await many(p, MODEL, 12)
        finally:
            await p.aclose()
    assert all(isinstance(r, ProviderResponse) for r in results)
    writes = [r for r in results if r.usage.cache_creation_input_tokens]
    reads = [r for r in results if r.usage.cache_read_input_tokens]
    assert len(writes) == 1 and len(reads) == 11
    prefix = writes[0].usage.cache_creation_input_tokens
    assert all(r.usage.cache_read_input_tokens == prefix for r in reads)
    assert all(r.usage.input_tokens > prefix for r in results)  # the whole prompt
    stats = server.stats
    assert (stats.cache_writes, stats.cache_reads) == (1, 11)
    assert stats.streams_started == 1  # only the warm-up was streamed


async def test_anthropic_failed_warm_up_hands_over() -> None:
    config = SimConfig(seed=3, latency="0.05", fail_first_n=1, fail_first_kind="500")
    async with MockServer(config, api_key=KEY) as server:
        p = anthropic(server.url)
        try:
            results = await many(p, MODEL, 8)
        finally:
            await p.aclose()
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(errors) == 1 and isinstance(errors[0], ServerError)
    ok = [r for r in results if isinstance(r, ProviderResponse)]
    assert sum(1 for r in ok if r.usage.cache_creation_input_tokens) == 1
    assert sum(1 for r in ok if r.usage.cache_read_input_tokens) == 6
    assert server.stats.cache_writes == 1


async def test_anthropic_streams_wait_for_the_warm_up_too() -> None:
    async with MockServer(SimConfig(seed=4, latency="0.05"), api_key=KEY) as server:
        p = anthropic(server.url)
        ends: list[ProviderStreamEnd] = []

        async def one(i: int) -> None:
            async for e in p.stream(MODEL, req(f"item {i}")):
                if isinstance(e, ProviderStreamEnd):
                    ends.append(e)

        try:
            async with anyio.create_task_group() as tg:
                for i in range(6):
                    tg.start_soon(one, i)
        finally:
            await p.aclose()
    assert sum(1 for e in ends if e.usage.cache_creation_input_tokens) == 1
    assert sum(1 for e in ends if e.usage.cache_read_input_tokens) == 5


# --------------------------------------------------------------------------- openai

OPENAI_MODEL = "gpt-4o-mini"
#: The hash of OPENAI_MODEL and SYSTEM, pinned: a changed key splits cached prefixes.
OPENAI_KEY = "8c5ebfa856d856fcd7aa361052646af2"


def openai_answer(cached: int | None) -> dict[str, Any]:
    usage: dict[str, Any] = {"prompt_tokens": 3000, "completion_tokens": 2, "total_tokens": 3002}
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached, "audio_tokens": 0}
    return {
        "id": "c1",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
        ],
        "usage": usage,
    }


@pytest.fixture(params=openai_provider.TRANSPORTS)
async def openai_scripted(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Scripted]:
    monkeypatch.setattr(openai_provider, "DEFAULT_TRANSPORT", request.param)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)

    async def handler(request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        if not body.get("stream"):
            return web.json_response(openai_answer(2944))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        chunks = [
            {"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]},
            {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            {"choices": [], "usage": openai_answer(1024)["usage"]},
        ]
        for c in chunks:
            await resp.write(b"data: " + json.dumps(c).encode() + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    s = Scripted("/v1/chat/completions", handler, url_path="/v1")
    await s.server.start_server()
    yield s
    await s.server.close()


def openai(url: str, **options: Any) -> openai_provider.OpenAIProvider:
    spec = ModelSpec("openai", OPENAI_MODEL, base_url=url, api_key="sk-x", options=options)
    return openai_provider.create(spec, max_connections=4)


async def test_openai_golden_bodies(openai_scripted: Scripted) -> None:
    p = openai(openai_scripted.url)
    try:
        out = await p.complete(OPENAI_MODEL, req("item 0"))
        short = await p.complete(OPENAI_MODEL, req("item 1", system="Be brief."))
        events = [e async for e in p.stream(OPENAI_MODEL, req("item 2"))]
    finally:
        await p.aclose()
    first, second, third = openai_scripted.raw_bodies
    system = json.dumps(SYSTEM)
    assert (
        first
        == (
            '{"model":"gpt-4o-mini","messages":[{"role":"system","content":' + system + "},"
            '{"role":"user","content":"item 0"}],"max_tokens":32,'
            f'"prompt_cache_key":"{OPENAI_KEY}"}}'
        ).encode()
    )
    assert second == (
        b'{"model":"gpt-4o-mini","messages":[{"role":"system","content":"Be brief."},'
        b'{"role":"user","content":"item 1"}],"max_tokens":32}'
    )
    assert json.loads(third)["prompt_cache_key"] == OPENAI_KEY
    assert out.usage == Usage(3000, 2, 0, 2944)
    assert short.usage == Usage(3000, 2, 0, 2944)
    end = events[-1]
    assert isinstance(end, ProviderStreamEnd) and end.usage == Usage(3000, 2, 0, 1024)


@pytest.mark.parametrize(
    ("options", "extra", "key"),
    [
        ({"prompt_cache": False}, None, None),
        ({}, {"prompt_cache_key": "mine"}, "mine"),
        ({"prompt_cache_min_tokens": 10_000}, None, None),
    ],
    ids=["off", "own key", "below the minimum"],
)
async def test_openai_key_steps_aside(
    openai_scripted: Scripted,
    options: dict[str, Any],
    extra: dict[str, Any] | None,
    key: str | None,
) -> None:
    p = openai(openai_scripted.url, **options)
    try:
        await p.complete(OPENAI_MODEL, req(extra=extra))
    finally:
        await p.aclose()
    body, _ = openai_scripted.seen[0]
    assert body.get("prompt_cache_key") == key


def test_openai_ttl_option_is_refused() -> None:
    from agentic_synth._exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match="prompt_cache"):
        openai_provider.validate(ModelSpec("openai", "m", options={"prompt_cache": "1h"}))


async def test_openai_warm_up_then_cached_tokens_on_the_mock_server() -> None:
    async with MockServer(SimConfig(seed=5, latency="0.05")) as server:
        p = openai(server.openai_url)
        try:
            results = await many(p, OPENAI_MODEL, 10)
        finally:
            await p.aclose()
    assert all(isinstance(r, ProviderResponse) for r in results)
    cached = sorted(r.usage.cache_read_input_tokens for r in results)
    assert cached[0] == 0 and all(c > 0 for c in cached[1:])
    # Counted in 128-token steps from 1,024, never more than the prompt.
    assert all(
        (c - 1024) % 128 == 0 and c <= r.usage.input_tokens
        for r, c in zip(results, cached, strict=False)
        if c
    )
    assert (server.stats.cache_writes, server.stats.cache_reads) == (1, 9)


# ------------------------------------------------------------------ the in-process sim


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


async def test_sim_provider_warm_up_then_reads() -> None:
    provider = SimProvider(SimConfig(seed=1, latency="0.02"))
    results = await many(provider, MODEL, 10)
    assert sum(1 for r in results if r.usage.cache_creation_input_tokens) == 1
    reads = [r.usage.cache_read_input_tokens for r in results if r.usage.cache_read_input_tokens]
    assert len(reads) == 9 and len(set(reads)) == 1
    # Same text as without caching: the cache changes the bill, not the answer.
    plain = await many(
        SimProvider(SimConfig(seed=1, latency="0.02", prompt_cache=False)), MODEL, 10
    )
    assert [r.text for r in results] == [r.text for r in plain]
    assert all(r.usage == Usage(r.usage.input_tokens, r.usage.output_tokens) for r in plain)


async def test_sim_provider_stream_usage_and_ttl_on_its_clock() -> None:
    clock = Clock()
    provider = SimProvider(SimConfig(seed=2), clock=clock)

    async def end(i: int) -> Usage:
        events = [e async for e in provider.stream(MODEL, req(f"item {i}"))]
        assert isinstance(events[0], TextDelta)
        last = events[-1]
        assert isinstance(last, ProviderStreamEnd)
        return last.usage

    first = await end(0)
    assert first.cache_creation_input_tokens > 0 and first.cache_read_input_tokens == 0
    clock.now += 299  # within the TTL: read (and refreshed)
    second = await end(1)
    assert second.cache_read_input_tokens == first.cache_creation_input_tokens
    clock.now += 299
    assert (await end(2)).cache_read_input_tokens > 0
    clock.now += 301  # idle longer than 5 minutes: expired, written again (now for an hour)
    again = await end(3)
    assert again.cache_creation_input_tokens > 0 and again.cache_read_input_tokens == 0
    clock.now += 1800
    assert (await end(4)).cache_read_input_tokens > 0  # the 1-hour entry is still there


async def test_sim_provider_minimum_length() -> None:
    short = SimProvider(SimConfig(prompt_cache_min_tokens=10_000))
    out = await short.complete(MODEL, req())
    assert (out.usage.cache_creation_input_tokens, out.usage.cache_read_input_tokens) == (0, 0)
    haiku = SimProvider()  # 3,000 tokens: under Haiku 4.5's 4,096
    out = await haiku.complete("claude-haiku-4-5", req())
    assert out.usage.cache_creation_input_tokens == 0
