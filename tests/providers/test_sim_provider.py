"""The in-process ``sim`` provider: answers, determinism, streaming, faults."""

from __future__ import annotations

import itertools
import json
import random
from typing import Any

import anyio
import jsonschema
import pytest

from agentic_synth._exceptions import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    ConfigurationError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProviderError,
    QuotaExceededError,
    RateLimitedError,
    RedirectError,
    ResponseTooLargeError,
    ServerError,
)
from agentic_synth._spec import ModelSpec, ResponseLimits
from agentic_synth._types import ProviderStreamEnd, Request, TextDelta
from agentic_synth.providers import Provider
from agentic_synth.providers import anthropic as anthropic_provider
from agentic_synth.providers import sim as sim_module
from agentic_synth.providers.sim import SimProvider, create
from agentic_synth.simulator import MockServer, SimConfig, fixed


def _request(i: int = 0, **kwargs: Any) -> Request:
    fields: dict[str, Any] = {"max_tokens": 400}
    fields.update(kwargs)
    return Request(messages=[{"role": "user", "content": f"Tell me fact number {i}."}], **fields)


async def _collect(provider: SimProvider, request: Request) -> tuple[str, ProviderStreamEnd]:
    text = ""
    end: ProviderStreamEnd | None = None
    async for event in provider.stream("sim-1", request):
        if isinstance(event, TextDelta):
            assert end is None, "no delta after the end event"
            text += event.text
        else:
            end = event
    assert end is not None
    return text, end


def test_is_a_provider() -> None:
    provider = create(ModelSpec(provider="sim", model="sim-1"), max_connections=10)
    assert isinstance(provider, Provider)
    assert provider.name == "sim"


async def test_complete_answers_plausibly() -> None:
    provider = SimProvider()
    response = await provider.complete("sim-1", _request())
    assert response.finish_reason == "end_turn"
    assert response.text[0].isupper() and response.text.endswith((".", "?"))
    assert response.usage.output_tokens == len(response.text.split())
    assert response.usage.input_tokens == (len("Tell me fact number 0.") + 3) // 4
    assert response.request_id is not None and response.request_id.startswith("req_sim_")


async def test_max_tokens_cut() -> None:
    response = await SimProvider().complete("sim-1", _request(max_tokens=3))
    assert response.finish_reason == "max_tokens"
    assert response.usage.output_tokens == 3
    assert len(response.text.split()) == 3


async def test_output_tokens_knob_sets_typical_length() -> None:
    provider = SimProvider(SimConfig(output_tokens=200))
    lengths = [
        (await provider.complete("m", _request(i, max_tokens=4000))).usage.output_tokens
        for i in range(200)
    ]
    mean = sum(lengths) / len(lengths)
    # 0.5x..1.5x of 200, extended to the sentence end (a sentence is ~9 words).
    assert 180 < mean < 240
    assert min(lengths) >= 100


async def test_stop_sequences_cut_the_text() -> None:
    provider = SimProvider()
    response = await provider.complete("m", _request(stop=(" the ", " a ")))
    assert response.finish_reason == "stop_sequence"
    assert " the " not in response.text and " a " not in response.text


async def test_same_seed_same_answers_and_retries_differ() -> None:
    a, b = SimProvider(SimConfig(seed=1)), SimProvider(SimConfig(seed=1))
    first_a = await a.complete("m", _request())
    first_b = await b.complete("m", _request())
    assert first_a.text == first_b.text and first_a.request_id == first_b.request_id
    second_a = await a.complete("m", _request())
    assert second_a.text != first_a.text
    assert second_a.request_id != first_a.request_id
    other_seed = await SimProvider(SimConfig(seed=2)).complete("m", _request())
    assert other_seed.text != first_a.text


async def test_outcomes_do_not_depend_on_interleaving() -> None:
    config = SimConfig(seed=9, fault_500=0.3, latency="uniform:0,0.002")
    requests = [_request(i % 40) for i in range(120)]  # each content seen three times

    async def run(order: list[int], concurrent: bool) -> dict[tuple[int, int], str]:
        provider = SimProvider(config)
        seen: dict[int, int] = {}
        results: dict[tuple[int, int], str] = {}

        async def one(i: int) -> None:
            key = i % 40
            occurrence = seen.get(key, 0)
            seen[key] = occurrence + 1
            try:
                results[(key, occurrence)] = (await provider.complete("m", requests[i])).text
            except ServerError:
                results[(key, occurrence)] = "<500>"

        if concurrent:
            async with anyio.create_task_group() as tg:
                for i in order:
                    tg.start_soon(one, i)
        else:
            for i in order:
                await one(i)
        return results

    sequential = await run(list(range(120)), concurrent=False)
    shuffled = list(range(120))
    random.Random(4).shuffle(shuffled)
    concurrent = await run(shuffled, concurrent=True)
    assert sequential == concurrent
    assert "<500>" in sequential.values()


async def test_stream_matches_complete() -> None:
    config = SimConfig(seed=3)
    whole = await SimProvider(config).complete("m", _request())
    text, end = await _collect(SimProvider(config), _request())
    assert text == whole.text
    assert end.finish_reason == whole.finish_reason
    assert end.usage == whole.usage
    assert end.request_id == whole.request_id


async def test_stream_delta_size_follows_chunk_knob() -> None:
    provider = SimProvider(SimConfig(stream_chunk_tokens=1))
    deltas = [e async for e in provider.stream("m", _request()) if isinstance(e, TextDelta)]
    assert len(deltas) == len("".join(d.text for d in deltas).split())


async def test_stream_paces_tokens_and_latency(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []
    deadlines: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async def fake_sleep_until(deadline: float) -> None:
        deadlines.append(deadline)

    monkeypatch.setattr(sim_module.anyio, "sleep", fake_sleep)
    monkeypatch.setattr(sim_module.anyio, "sleep_until", fake_sleep_until)
    provider = SimProvider(SimConfig(latency=fixed(0.25), tokens_per_s=100, stream_chunk_tokens=2))
    _text, end = await _collect(provider, _request())
    assert sleeps == [0.25]
    n_deltas = -(-end.usage.output_tokens // 2)
    assert len(deadlines) == n_deltas - 1
    gaps = {round(b - a, 9) for a, b in itertools.pairwise(deadlines)}
    assert gaps == {0.02}


async def test_complete_waits_latency_plus_generation(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    monkeypatch.setattr(sim_module.anyio, "sleep", fake_sleep)
    response = await SimProvider(SimConfig(latency=0.5, tokens_per_s=10)).complete("m", _request())
    assert sleeps == [pytest.approx(0.5 + (response.usage.output_tokens - 1) / 10)]


async def test_zero_latency_never_sleeps(monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_sleep(seconds: float) -> None:
        raise AssertionError(f"slept {seconds}")

    monkeypatch.setattr(sim_module.anyio, "sleep", no_sleep)
    await SimProvider().complete("m", _request())
    await _collect(SimProvider(), _request())


@pytest.mark.parametrize(
    ("fault", "cls", "status"),
    [
        ("429", RateLimitedError, 429),
        ("500", ServerError, 500),
        ("529", OverloadedError, 529),
        ("reset", APIConnectionError, None),
        ("malformed", APIConnectionError, None),
        ("truncate", APIConnectionError, None),
        ("stream_error", OverloadedError, 529),
    ],
)
async def test_faults_raise_provider_errors(
    fault: str, cls: type[ProviderError], status: int | None
) -> None:
    provider = SimProvider(SimConfig(**{f"fault_{fault}": 1.0}, retry_after=2.5))
    with pytest.raises(cls) as info:
        await provider.complete("sim-1", _request())
    error = info.value
    assert type(error) is cls
    assert error.status == status
    assert error.model == "sim-1"
    assert error.request_id is not None and error.request_id.startswith("req_sim_")
    if fault in ("429", "529"):
        assert error.retry_after == 2.5
    with pytest.raises(cls):
        await _collect(provider, _request())


@pytest.mark.parametrize(
    ("fault", "cls"), [("truncate", APIConnectionError), ("stream_error", OverloadedError)]
)
async def test_mid_stream_faults_come_after_some_deltas(
    fault: str, cls: type[ProviderError]
) -> None:
    provider = SimProvider(SimConfig(**{f"fault_{fault}": 1.0}, stream_chunk_tokens=1))
    delta_counts = []
    for i in range(20):
        deltas = 0
        with pytest.raises(cls):
            async for event in provider.stream("m", _request(i)):
                assert isinstance(event, TextDelta)
                deltas += 1
        delta_counts.append(deltas)
    assert max(delta_counts) > 0


async def test_timeout_fault_waits_for_the_request_deadline() -> None:
    provider = SimProvider(SimConfig(fault_timeout=1.0))
    with pytest.raises(APITimeoutError) as info:
        await provider.complete("m", _request(timeout=0.01))
    assert "0.01" in str(info.value)
    with pytest.raises(APITimeoutError):
        await _collect(provider, _request(timeout=0.01))


async def test_fault_rate_is_respected() -> None:
    provider = SimProvider(SimConfig(fault_429=0.2, fault_500=0.1, seed=5))
    counts = {"ok": 0, "429": 0, "500": 0}
    for i in range(2000):
        try:
            await provider.complete("m", _request(i))
            counts["ok"] += 1
        except RateLimitedError:
            counts["429"] += 1
        except ServerError:
            counts["500"] += 1
    assert 0.17 < counts["429"] / 2000 < 0.23
    assert 0.07 < counts["500"] / 2000 < 0.13


async def test_retry_after_a_fault_can_succeed() -> None:
    provider = SimProvider(SimConfig(fault_500=0.5, seed=1))
    request = _request()
    outcomes = []
    for _ in range(30):
        try:
            await provider.complete("m", request)
            outcomes.append("ok")
        except ServerError:
            outcomes.append("500")
    assert set(outcomes) == {"ok", "500"}


async def test_fail_first_n() -> None:
    provider = SimProvider(SimConfig(fail_first_n=2, fail_first_kind="529"))
    for _ in range(2):
        with pytest.raises(OverloadedError):
            await provider.complete("m", _request())
    await provider.complete("m", _request())


@pytest.mark.parametrize(
    ("options", "cls", "status", "code"),
    [
        ({"fault_quota": 1.0}, QuotaExceededError, 400, "invalid_request_error"),
        ({"fault_not_found": 1.0}, NotFoundError, 404, "not_found_error"),
        ({"forbidden": 1.0}, PermissionDeniedError, 403, "permission_error"),
        ({"unauthorized": True}, AuthenticationError, 401, "authentication_error"),
        ({"fault_long_retry_after": 1.0}, RateLimitedError, 429, "rate_limit_error"),
        ({"fault_no_retry": 1.0}, ServerError, 500, "api_error"),
        ({"fault_redirect": 1.0}, RedirectError, 307, None),
    ],
)
async def test_status_faults_raise_what_the_anthropic_provider_would(
    options: dict[str, Any], cls: type[ProviderError], status: int, code: str | None
) -> None:
    """Same classes, codes and header-derived fields as the mock server's answers give."""
    provider = SimProvider(SimConfig(**options))
    for call in ("complete", "stream"):
        with pytest.raises(cls) as info:
            if call == "complete":
                await provider.complete("sim-1", _request())
            else:
                await _collect(provider, _request())
        error = info.value
        assert type(error) is cls
        assert (error.status, error.code, error.model) == (status, code, "sim-1")
        assert error.request_id is not None and error.request_id.startswith("req_sim_")


@pytest.mark.parametrize(
    "options",
    [
        {"fault_quota": 1.0},
        {"fault_not_found": 1.0},
        {"forbidden": 1.0},
        {"unauthorized": True},
        {"fault_long_retry_after": 1.0},
        {"fault_no_retry": 1.0},
        {"fault_redirect": 1.0},
    ],
)
async def test_status_faults_match_the_anthropic_provider_on_the_mock_server(
    options: dict[str, Any],
) -> None:
    """In process or over the wire, one config gives the router the same error."""
    config = SimConfig(**options)
    with pytest.raises(ProviderError) as simulated:
        await SimProvider(config).complete("m", _request())
    async with MockServer(config) as server:
        spec = ModelSpec("anthropic", "m", base_url=server.url, api_key="sk-ant-test-key")
        provider = anthropic_provider.create(spec, max_connections=2)
        try:
            with pytest.raises(ProviderError) as wired:
                await provider.complete("m", _request())
        finally:
            await provider.aclose()
    got, want = simulated.value, wired.value
    assert type(got) is type(want)
    assert (got.status, got.code, got.should_retry, got.retry_after) == (
        want.status,
        want.code,
        want.should_retry,
        want.retry_after,
    )


async def test_status_fault_details() -> None:
    quota = SimProvider(SimConfig(fault_quota=1.0))
    with pytest.raises(QuotaExceededError, match="credit balance is too low"):
        await quota.complete("m", _request())
    missing = SimProvider(SimConfig(fault_not_found=1.0))
    with pytest.raises(NotFoundError, match="model: claude-nope"):
        await missing.complete("claude-nope", _request())
    slow = SimProvider(SimConfig(fault_long_retry_after=1.0, long_retry_after=60))
    with pytest.raises(RateLimitedError) as limited:
        await slow.complete("m", _request())
    assert limited.value.retry_after == 60
    no_retry = SimProvider(SimConfig(fault_no_retry=1.0))
    with pytest.raises(ServerError) as server_error:
        await no_retry.complete("m", _request())
    assert server_error.value.should_retry is False
    moved = SimProvider(SimConfig(fault_redirect=1.0, redirect_status=301))
    with pytest.raises(RedirectError) as redirect:
        await moved.complete("m", _request())
    assert redirect.value.status == 301
    assert redirect.value.location == "https://sim.invalid/v1/messages"
    elsewhere = SimProvider(SimConfig(fault_redirect=1.0, redirect_location="https://x.test/"))
    with pytest.raises(RedirectError) as redirect:
        await elsewhere.complete("m", _request())
    assert redirect.value.location == "https://x.test/"


async def test_forbidden_blocks_the_same_prompts_on_every_attempt() -> None:
    config = SimConfig(forbidden=0.2, seed=6)
    provider = SimProvider(config)
    outcomes: dict[int, set[str]] = {}
    for _ in range(3):
        for i in range(100):
            try:
                await provider.complete("m", _request(i))
                outcomes.setdefault(i, set()).add("ok")
            except PermissionDeniedError:
                outcomes.setdefault(i, set()).add("403")
    assert all(len(seen) == 1 for seen in outcomes.values())
    blocked = {i for i, seen in outcomes.items() if seen == {"403"}}
    expected = {
        i for i in range(100) if provider.simulator.is_forbidden(f"Tell me fact number {i}.")
    }
    assert blocked == expected and 5 <= len(blocked) <= 40


@pytest.mark.parametrize(
    ("options", "cls"),
    [
        ({"fault_huge_headers": 1.0, "huge_header_bytes": 1 << 20}, ResponseTooLargeError),
        ({"fault_huge_body": 1.0}, ResponseTooLargeError),
        ({"fault_huge_body": 1.0, "huge_body_bytes": 1 << 30}, ResponseTooLargeError),
        ({"fault_endless_sse_line": 1.0}, ResponseTooLargeError),
        ({"fault_silent_stream": 1.0}, APITimeoutError),
        ({"fault_trickle": 1.0}, APITimeoutError),
    ],
)
async def test_hostile_faults_end_as_a_bounded_client_ends_them(
    options: dict[str, Any], cls: type[ProviderError]
) -> None:
    provider = SimProvider(SimConfig(**options))
    with pytest.raises(cls):
        await provider.complete("m", _request(timeout=0.01))
    with pytest.raises(cls):
        await _collect(provider, _request(timeout=0.01))


async def test_hostile_faults_within_the_limits_are_answered() -> None:
    limits = ResponseLimits(max_header_bytes=1 << 21, max_body_bytes=1 << 21)
    for options in (
        {"fault_interim_1xx": 1.0},
        {"fault_huge_headers": 1.0, "huge_header_bytes": 1 << 20},
        {"fault_huge_body": 1.0, "huge_body_bytes": 1 << 20},
    ):
        provider = SimProvider(SimConfig(**options), limits=limits)
        assert (await provider.complete("m", _request())).text
        text, _ = await _collect(provider, _request(1))
        assert text


async def test_silent_stream_ends_at_the_read_idle_timeout() -> None:
    limits = ResponseLimits(read_idle_timeout=0.01)
    provider = SimProvider(SimConfig(fault_silent_stream=1.0), limits=limits)
    with pytest.raises(APITimeoutError, match=r"after 0\.01s"):
        await provider.complete("m", _request(timeout=60.0))


def test_create_passes_the_response_limits() -> None:
    limits = ResponseLimits(max_body_bytes=1000)
    spec = ModelSpec(provider="sim", model="sim-1", response_limits=limits)
    assert create(spec, max_connections=1).limits is limits


async def test_json_schema_output_validates() -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 2},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        },
        "required": ["name", "age", "tags"],
        "additionalProperties": False,
    }
    provider = SimProvider()
    for i in range(20):
        response = await provider.complete("m", _request(i, json_schema=schema))
        jsonschema.validate(json.loads(response.text), schema)
        assert response.finish_reason == "end_turn"
        text, _ = await _collect(provider, _request(i + 100, json_schema=schema))
        jsonschema.validate(json.loads(text), schema)


async def test_json_cut_at_max_tokens() -> None:
    schema = {"type": "array", "items": {"type": "string"}, "minItems": 30}
    response = await SimProvider().complete("m", _request(json_schema=schema, max_tokens=5))
    assert response.finish_reason == "max_tokens"
    assert len(response.text) == 20


def test_create_reads_options() -> None:
    spec = ModelSpec(
        provider="sim",
        model="x",
        options={"latency": "uniform:0.01,0.02", "fault_429": 0.1, "seed": 4},
    )
    provider = create(spec, max_connections=1)
    assert provider.config.seed == 4
    assert provider.config.latency.kind == "uniform"
    base = SimConfig(seed=8, output_tokens=10)
    provider = create(
        ModelSpec(provider="sim", model="x", options={"config": base, "seed": 9}),
        max_connections=1,
    )
    assert (provider.config.seed, provider.config.output_tokens) == (9, 10)


def test_create_rejects_unknown_options() -> None:
    with pytest.raises(ConfigurationError, match="latencyy"):
        create(ModelSpec(provider="sim", model="x", options={"latencyy": 1}), max_connections=1)


async def test_aclose_and_early_stream_close() -> None:
    provider = SimProvider(SimConfig(stream_chunk_tokens=1))
    stream = provider.stream("m", _request())
    first = await stream.__anext__()  # type: ignore[attr-defined]
    assert isinstance(first, TextDelta)
    await stream.aclose()  # type: ignore[attr-defined]
    await provider.aclose()
