"""The provider side of prompt caching: the simulator's cache, and the mock server
answering marked requests as the APIs do (checked with independent clients)."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import anyio
import httpx
import pytest

from agentic_synth.providers._prompt_cache import EXTENDED_TTL_BETA
from agentic_synth.simulator import MockServer, SimConfig, add_mock_server_arguments
from agentic_synth.simulator import config_from_args as parse_config
from agentic_synth.simulator._prompt_cache import LOOKBACK_BLOCKS, Block, PromptCacheSim

MODEL = "claude-sonnet-4-5"
SYSTEM = "s" * 8000  # 2,000 estimated tokens
EPHEMERAL = {"type": "ephemeral"}


class Clock:
    def __init__(self) -> None:
        self.now = 10.0

    def __call__(self) -> float:
        return self.now


def blocks(system: str = SYSTEM, ttl: str | None = "5m", user: str = "question") -> list[Block]:
    return [(system, "s", ttl), (user, "u0", None)]


def total(parts: list[Block]) -> int:
    return (len("\n".join(p[0] for p in parts)) + 3) // 4


# ------------------------------------------------------------------ the cache itself


def test_write_readable_only_once_the_answer_started() -> None:
    cache = PromptCacheSim(clock=Clock())
    first = cache.anthropic(MODEL, blocks(), total(blocks()))
    assert first is not None and (first.read, first.written) == (0, 2000)
    racing = cache.anthropic(MODEL, blocks(user="other"), total(blocks(user="other")))
    assert racing is not None and (racing.read, racing.written) == (0, 2000)  # writes as well
    cache.started(first)
    after = cache.anthropic(MODEL, blocks(user="third"), total(blocks(user="third")))
    assert after is not None and (after.read, after.written) == (2000, 0)


def test_below_the_minimum_nothing_is_cached() -> None:
    cache = PromptCacheSim(clock=Clock())
    short = blocks("s" * 4000)  # 1,000 tokens: under Sonnet 4.5's 1,024
    use = cache.anthropic(MODEL, short, total(short))
    assert use is not None and (use.read, use.written, use.writes) == (0, 0, [])
    strict = PromptCacheSim(SimConfig(prompt_cache_min_tokens=3000), clock=Clock())
    use = strict.anthropic(MODEL, blocks(), total(blocks()))
    assert use is not None and use.written == 0
    haiku = cache.anthropic("claude-haiku-4-5", blocks(), total(blocks()))  # needs 4,096
    assert haiku is not None and haiku.written == 0


def test_ttl_refreshed_by_reads_and_expiring_on_the_clock() -> None:
    clock = Clock()
    cache = PromptCacheSim(clock=clock)
    use = cache.anthropic(MODEL, blocks(), 2003)
    assert use is not None
    cache.started(use)
    for _ in range(3):
        clock.now += 290  # each read refreshes the 5 minutes
        read = cache.anthropic(MODEL, blocks(), 2003)
        assert read is not None and read.read == 2000
    clock.now += 301
    expired = cache.anthropic(MODEL, blocks(), 2003)
    assert expired is not None and (expired.read, expired.written) == (0, 2000)


def test_one_hour_needs_the_beta_header() -> None:
    clock = Clock()
    cache = PromptCacheSim(clock=clock)
    plain = cache.anthropic(MODEL, blocks(ttl="1h"), 2003, one_hour=False)
    assert plain is not None and plain.written_1h == 0 and plain.writes[0][1] == 300.0
    beta = cache.anthropic(MODEL, blocks(ttl="1h"), 2003, one_hour=True)
    assert beta is not None and beta.written_1h == 2000
    cache.started(beta)
    clock.now += 1800
    later = cache.anthropic(MODEL, blocks(ttl="1h"), 2003)
    assert later is not None and later.read == 2000


def test_reads_the_longest_entry_and_writes_the_rest() -> None:
    cache = PromptCacheSim(clock=Clock())
    shots: list[Block] = [
        ("s" * 4400, "s", "5m"),
        ("e" * 4000, "u0", None),
        ("a" * 4000, "a1", "5m"),
    ]
    first = cache.anthropic(MODEL, [*shots, ("q1", "u2", None)], 4000)
    assert first is not None and (first.read, first.written) == (0, 3101)
    cache.started(first)
    # Another few-shot set after the same system prompt: reads the system entry.
    other = [shots[0], ("f" * 4000, "u0", None), ("b" * 4000, "a1", "5m"), ("q", "u2", None)]
    use = cache.anthropic(MODEL, other, 4000)
    assert use is not None and (use.read, use.written) == (1100, 2001)


def test_lookback_finds_entries_up_to_20_blocks_before_a_breakpoint() -> None:
    cache = PromptCacheSim(SimConfig(prompt_cache_min_tokens=10), clock=Clock())
    turns = [(f"turn {i} " * 20, f"u{i}", None) for i in range(30)]
    written = [*turns]
    written[4] = (turns[4][0], "u4", "5m")
    use = cache.anthropic(MODEL, written, 10_000)
    assert use is not None
    cache.started(use)
    near = [*turns]
    near[4 + LOOKBACK_BLOCKS] = (turns[4 + LOOKBACK_BLOCKS][0], f"u{4 + LOOKBACK_BLOCKS}", "5m")
    found = cache.anthropic(MODEL, near, 10_000)
    assert found is not None and found.read > 0
    far = [*turns]
    far[5 + LOOKBACK_BLOCKS] = (turns[5 + LOOKBACK_BLOCKS][0], f"u{5 + LOOKBACK_BLOCKS}", "5m")
    missed = cache.anthropic(MODEL, far, 10_000)
    assert missed is not None and missed.read == 0


def test_openai_caches_long_prompts_in_128_token_steps() -> None:
    cache = PromptCacheSim(clock=Clock())
    prompt: list[Block] = [("x" * 6000, "s", None), ("question one", "u0", None)]
    first = cache.openai("gpt-4o", prompt, 1504)
    assert first is not None and first.read == 0
    cache.started(first)
    again = cache.openai("gpt-4o", [prompt[0], ("question two", "u0", None)], 1504)
    assert again is not None and again.read == 1408  # 1,500 prefix tokens: 1,024 + 3 x 128
    assert cache.openai("gpt-4o", [("short", "u0", None)], 2) is None
    off = PromptCacheSim(SimConfig(prompt_cache=False), clock=Clock())
    assert off.openai("gpt-4o", prompt, 1504) is None


def test_entries_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from agentic_synth.simulator import _prompt_cache

    monkeypatch.setattr(_prompt_cache, "MAX_ENTRIES", 50)
    cache = PromptCacheSim(clock=Clock())
    for i in range(200):
        use = cache.anthropic(MODEL, blocks(f"{i}" + SYSTEM), 2010)
        assert use is not None
        cache.started(use)
    assert len(cache) <= 50


def test_config_checks_prompt_cache_fields() -> None:
    from agentic_synth._exceptions import ConfigurationError

    assert SimConfig(prompt_cache="1h").prompt_cache == "1h"
    with pytest.raises(ConfigurationError, match="prompt_cache"):
        SimConfig(prompt_cache="always")
    with pytest.raises(ConfigurationError, match="prompt_cache_min_tokens"):
        SimConfig(prompt_cache_min_tokens=0)
    parser = argparse.ArgumentParser()
    add_mock_server_arguments(parser)
    config = parse_config(
        parser.parse_args(["--prompt-cache", "off", "--prompt-cache-min-tokens", "2048"])
    )
    assert (config.prompt_cache, config.prompt_cache_min_tokens) == (False, 2048)
    assert SimConfig.from_mapping(config.to_mapping()) == config


# ------------------------------------------------------------------ over the wire


@pytest.fixture
async def server() -> AsyncIterator[MockServer]:
    async with MockServer(SimConfig(seed=3, latency="0.05")) as srv:
        yield srv


def body(user: str = "question", **kw: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 20,
        "system": [{"type": "text", "text": SYSTEM, "cache_control": EPHEMERAL}],
        "messages": [{"role": "user", "content": user}],
        **kw,
    }


async def post(server: MockServer, payload: dict[str, Any], **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        return await client.post("/v1/messages", json=payload, headers=headers)


async def test_write_then_read_with_the_official_sdk(server: MockServer) -> None:
    async with anthropic.AsyncAnthropic(base_url=server.url, api_key="k", max_retries=0) as c:
        first = await c.messages.create(**body("one"))
        second = await c.messages.create(**body("two"))
        async with c.messages.stream(**body("three")) as stream:
            start = None
            async for event in stream:
                if event.type == "message_start":
                    start = event.message.usage
            final = await stream.get_final_message()
    assert first.usage.cache_creation_input_tokens == 2000
    assert first.usage.cache_read_input_tokens == 0
    assert first.usage.input_tokens == 1  # the uncached rest: 8,004 characters in all
    assert first.usage.cache_creation is not None
    assert first.usage.cache_creation.ephemeral_5m_input_tokens == 2000
    assert second.usage.cache_read_input_tokens == 2000
    assert second.usage.cache_creation_input_tokens == 0
    assert start is not None and start.cache_read_input_tokens == 2000
    assert final.usage.cache_read_input_tokens == 2000
    assert (server.stats.cache_writes, server.stats.cache_reads) == (1, 2)
    assert server.stats.cache_read_tokens == 4000


async def test_parallel_requests_all_write(server: MockServer) -> None:
    """Why the client warms up first: an entry is readable only once its answer started."""
    usages: list[dict[str, Any]] = []

    async def one(i: int) -> None:
        usages.append((await post(server, body(f"q{i}"))).json()["usage"])

    async with anyio.create_task_group() as tg:
        for i in range(5):
            tg.start_soon(one, i)
    assert all(u["cache_creation_input_tokens"] == 2000 for u in usages)
    assert server.stats.cache_writes == 5


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (
            body(
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": f"p{i}", "cache_control": EPHEMERAL}
                            for i in range(4)
                        ],
                    }
                ]
            ),
            "A maximum of 4 blocks with cache_control may be provided. Found 5.",
        ),
        (
            body(
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "text",
                                "text": "x",
                                "cache_control": {**EPHEMERAL, "ttl": "1h"},
                            }
                        ],
                    }
                ]
            ),
            "ttl='1h' must not come after one with ttl='5m'",
        ),
        (body(cache_control={"type": "persistent"}), "cache_control.type"),
        (body(cache_control={**EPHEMERAL, "ttl": "2h"}), "cache_control.ttl"),
    ],
    ids=["five breakpoints", "1h after 5m", "bad type", "bad ttl"],
)
async def test_invalid_breakpoints_are_400(
    server: MockServer, payload: dict[str, Any], message: str
) -> None:
    resp = await post(server, payload)
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error" and message in error["message"]


async def test_one_hour_breakpoints_first_and_the_beta_header(server: MockServer) -> None:
    one_hour = {**EPHEMERAL, "ttl": "1h"}
    payload = body(
        system=[{"type": "text", "text": SYSTEM, "cache_control": one_hour}],
        messages=[
            {
                "role": "user",
                "content": [{"type": "text", "text": "y" * 800, "cache_control": EPHEMERAL}],
            },
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "q"},
        ],
    )
    with_beta = (await post(server, payload, **{"anthropic-beta": EXTENDED_TTL_BETA})).json()
    creation = with_beta["usage"]["cache_creation"]
    assert creation == {"ephemeral_5m_input_tokens": 201, "ephemeral_1h_input_tokens": 2000}
    assert with_beta["usage"]["cache_creation_input_tokens"] == 2201


async def test_top_level_cache_control_marks_the_last_block(server: MockServer) -> None:
    payload = {
        "model": MODEL,
        "max_tokens": 20,
        "cache_control": EPHEMERAL,
        "system": SYSTEM,
        "messages": [{"role": "user", "content": "q"}],
    }
    first = (await post(server, payload)).json()["usage"]
    second = (await post(server, payload)).json()["usage"]
    assert first["cache_creation_input_tokens"] == 2001  # up to the last block, "q" included
    assert (second["cache_read_input_tokens"], second["input_tokens"]) == (2001, 0)


async def test_no_marks_and_prompt_cache_off_cache_nothing() -> None:
    async with MockServer(SimConfig(prompt_cache=False)) as off:
        usage = (await post(off, body())).json()["usage"]
        assert usage["cache_creation_input_tokens"] == 0
    async with MockServer(SimConfig()) as on:
        plain = {**body(), "system": SYSTEM}
        usage = (await post(on, plain)).json()["usage"]
        assert (usage["cache_creation_input_tokens"], usage["input_tokens"]) == (0, 2003)


async def test_status_faults_write_nothing() -> None:
    async with MockServer(SimConfig(fail_first_n=1)) as srv:
        assert (await post(srv, body())).status_code == 500
        usage = (await post(srv, body())).json()["usage"]
    assert usage["cache_creation_input_tokens"] == 2000  # the failed one cached nothing
    assert srv.stats.cache_writes == 1


async def test_openai_wire_reports_cached_tokens(server: MockServer) -> None:
    payload = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "one"}],
        "prompt_cache_key": "abc",
    }
    async with httpx.AsyncClient(base_url=server.openai_url, timeout=10) as client:
        first = (await client.post("/chat/completions", json=payload)).json()["usage"]
        payload["messages"][1]["content"] = "two"  # type: ignore[index]
        second = (await client.post("/chat/completions", json=payload)).json()["usage"]
        streamed = {**payload, "stream": True, "stream_options": {"include_usage": True}}
        async with client.stream("POST", "/chat/completions", json=streamed) as resp:
            lines = [line async for line in resp.aiter_lines() if line.startswith("data: {")]
    assert first["prompt_tokens_details"] == {"cached_tokens": 0}
    assert second["prompt_tokens_details"] == {"cached_tokens": 1920}  # 2,000: 1,024 + 7 x 128
    assert '"cached_tokens":1920' in lines[-1]
    assert (server.stats.cache_writes, server.stats.cache_reads) == (1, 2)
