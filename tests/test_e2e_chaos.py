"""Chaos end to end: Synth -> router -> the anthropic SDK / the openai provider -> real
sockets -> the mock server misbehaving the way real deployments and networks do.

Each test states what a user must see: which inputs succeed, which end as exactly one
``Failure`` of which class, and that a dead or hostile deployment costs seconds and a
bounded amount of memory, not minutes or gigabytes. Every test body runs under
``anyio.fail_after``, so a regression fails the test instead of hanging CI.
"""

from __future__ import annotations

import resource
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import pytest

from agentic_synth import (
    APITimeoutError,
    BreakerConfig,
    Completion,
    ConfigurationError,
    Failure,
    ModelSpec,
    PermissionDeniedError,
    PoolTimeoutError,
    ProviderError,
    RedirectError,
    ResponseTooLargeError,
    Result,
    RetryPolicy,
    Synth,
    TextDelta,
    UnreachableError,
)
from agentic_synth._spec import ResponseLimits
from agentic_synth.simulator import MockServer, SimConfig, Simulator

FAST_RETRY = RetryPolicy(max_attempts=4, base=0.005, cap=0.02)
#: A breaker that never opens: for tests about one failure class, not about breakers.
NO_BREAKER = BreakerConfig(failure_threshold=1_000_000, failure_rate=1.0)
ANTHROPIC_KEY = "sk-ant-test-key-0123456789"
OPENAI_KEY = "sk-test-key-0123456789"

Make = Callable[..., ModelSpec]


@asynccontextmanager
async def servers(*configs: SimConfig) -> AsyncIterator[list[MockServer]]:
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(MockServer(c)) for c in configs]


def anthropic(server: MockServer, name: str = "mock", **kw: Any) -> ModelSpec:
    return ModelSpec("anthropic", name, base_url=server.url, api_key=ANTHROPIC_KEY, **kw)


def openai(server: MockServer, name: str = "mock", **kw: Any) -> ModelSpec:
    return ModelSpec("openai", name, base_url=server.openai_url, api_key=OPENAI_KEY, **kw)


BOTH = pytest.mark.parametrize("make", [anthropic, openai], ids=["anthropic-sdk", "openai"])


def requests_to(server: MockServer) -> int:
    """Generation requests the server received (either wire format)."""
    return server.stats.requests["/v1/messages"] + server.stats.requests["/v1/chat/completions"]


def one_each(results: Sequence[Result], n: int) -> None:
    """Exactly one record per input, in input order."""
    assert len(results) == n
    assert [r.index for r in results] == list(range(n))


def failures(results: Sequence[Result]) -> dict[int, BaseException]:
    return {r.index: r.error for r in results if isinstance(r, Failure)}  # type: ignore[misc]


# -- a. half-open breaker: one probe, not a herd ---------------------------------------


@BOTH
async def test_half_open_breaker_recovers_instead_of_failing_the_herd(make: Make) -> None:
    """A primary that fails its first 8 requests, then is healthy: after the cooldown
    the breaker must let the job recover, not fail every request queued behind it."""
    n = 200
    with anyio.fail_after(60):
        async with servers(SimConfig(fail_first_n=8, fail_first_kind="500")) as (srv,):
            async with Synth(
                [make(srv)], max_concurrency=16, breaker=BreakerConfig(cooldown=1.0)
            ) as synth:
                results = await synth.generate_batch([f"q{i}" for i in range(n)], max_tokens=8)
    one_each(results, n)
    assert failures(results) == {}
    assert srv.stats.faults["500"] == 8
    assert srv.stats.responses[200] == n


# -- b. quota exhausted primary, healthy backup ----------------------------------------


@BOTH
async def test_quota_exhausted_primary_falls_back_and_stops_calling_it(make: Make) -> None:
    n, concurrency = 300, 16
    with anyio.fail_after(60):
        async with servers(SimConfig(fault_quota=1.0), SimConfig()) as (primary, backup):
            async with Synth(
                [make(primary, "primary"), make(backup, "backup")],
                max_concurrency=concurrency,
                retry=FAST_RETRY,
            ) as synth:
                results = await synth.generate_batch([f"q{i}" for i in range(n)], max_tokens=8)
    one_each(results, n)
    assert failures(results) == {}
    assert all(r.model == f"{make.__name__}:backup" for r in results)  # type: ignore[union-attr]
    assert backup.stats.responses[200] == n
    # Out of credit is not a blip: the primary stops getting traffic after the calls
    # already in flight when the first answer came back.
    assert requests_to(primary) <= concurrency + 4


# -- c. model not found / x-should-retry: false on the primary --------------------------


@BOTH
async def test_model_not_found_primary_falls_back(make: Make) -> None:
    n, concurrency = 200, 16
    with anyio.fail_after(60):
        async with servers(SimConfig(fault_not_found=1.0), SimConfig()) as (primary, backup):
            async with Synth(
                [make(primary, "no-such-model"), make(backup, "backup")],
                max_concurrency=concurrency,
                retry=FAST_RETRY,
            ) as synth:
                results = await synth.generate_batch([f"q{i}" for i in range(n)], max_tokens=8)
    one_each(results, n)
    assert failures(results) == {}
    assert backup.stats.responses[200] == n
    assert requests_to(primary) <= concurrency + 4  # a missing model stays missing


@BOTH
async def test_should_retry_false_falls_back_at_once(make: Make) -> None:
    """The server says "do not retry": each input goes to the backup instead of
    retrying the primary (the breaker is kept out of it)."""
    n = 200
    with anyio.fail_after(60):
        async with servers(SimConfig(fault_no_retry=1.0), SimConfig()) as (primary, backup):
            async with Synth(
                [make(primary, "primary"), make(backup, "backup")],
                max_concurrency=16,
                retry=FAST_RETRY,
                breaker=NO_BREAKER,
            ) as synth:
                results = await synth.generate_batch([f"q{i}" for i in range(n)], max_tokens=8)
                retries = synth.metrics().retries
    one_each(results, n)
    assert failures(results) == {}
    assert backup.stats.responses[200] == n
    assert requests_to(primary) <= n  # at most one try each
    assert retries == 0


# -- d. a content block on 1% of prompts --------------------------------------------------


@BOTH
async def test_content_blocked_prompts_fail_alone_and_the_job_goes_on(make: Make) -> None:
    n = 1000
    config = SimConfig(forbidden=0.01, seed=5)
    prompts = [f"item {i}" for i in range(n)]
    sim = Simulator(config)
    blocked = {i for i, p in enumerate(prompts) if sim.is_forbidden(p)}
    assert 3 <= len(blocked) <= 25
    with anyio.fail_after(60):
        async with servers(config) as (srv,):
            async with Synth([make(srv)], max_concurrency=32, retry=FAST_RETRY) as synth:
                results = await synth.generate_batch(prompts, max_tokens=8)
    one_each(results, n)
    failed = failures(results)
    assert set(failed) == blocked
    assert all(type(e) is PermissionDeniedError for e in failed.values())
    assert srv.stats.responses[200] == n - len(blocked)


# -- e. the wrong key everywhere ----------------------------------------------------------


async def test_wrong_key_everywhere_stops_with_a_configuration_error() -> None:
    with anyio.fail_after(30):
        async with servers(SimConfig(unauthorized=True), SimConfig(unauthorized=True)) as (
            first,
            second,
        ):
            async with Synth([anthropic(first), openai(second)], max_concurrency=8) as synth:
                with pytest.raises(ConfigurationError, match="API key") as info:
                    await synth.generate_batch([f"q{i}" for i in range(10_000)], max_tokens=8)
    for text in (str(info.value), repr(info.value)):
        assert ANTHROPIC_KEY not in text and OPENAI_KEY not in text
    assert requests_to(first) + requests_to(second) < 100  # stopped, not 10,000 401s


# -- f. a long Retry-After on the primary, an idle backup ------------------------------------


@BOTH
async def test_long_retry_after_sends_work_to_the_backup_instead_of_sleeping(
    make: Make,
) -> None:
    """Retry-After: 60 with an idle backup at hand: nobody waits a minute. The deadline
    is generous for a job of well under a second, and far below 60 s."""
    n = 100
    primary_config = SimConfig(fault_long_retry_after=1.0, long_retry_after=60)
    with anyio.fail_after(30):
        async with servers(primary_config, SimConfig()) as (primary, backup):
            async with Synth(
                [make(primary, "primary"), make(backup, "backup")],
                max_concurrency=16,
                retry=FAST_RETRY,
            ) as synth:
                results = await synth.generate_batch([f"q{i}" for i in range(n)], max_tokens=8)
    one_each(results, n)
    assert failures(results) == {}
    assert backup.stats.responses[200] == n
    assert primary.stats.faults["long_retry_after"] == requests_to(primary)


# -- g. nothing listening / no such host ------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("where", ["refused", "unresolvable"])
@pytest.mark.parametrize("provider", ["anthropic", "openai"])
async def test_unreachable_only_model_ends_in_seconds_naming_the_host(
    provider: str, where: str
) -> None:
    host = "127.0.0.1" if where == "refused" else "nonexistent.invalid"
    base = f"http://{host}:{_closed_port()}" if where == "refused" else f"http://{host}"
    url = base if provider == "anthropic" else f"{base}/v1"
    key = ANTHROPIC_KEY if provider == "anthropic" else OPENAI_KEY
    spec = ModelSpec(provider, "m", base_url=url, api_key=key)
    n = 50
    with anyio.fail_after(20):
        async with Synth([spec], max_concurrency=8) as synth:
            try:
                results = await synth.generate_batch([f"q{i}" for i in range(n)], max_tokens=8)
            except ConfigurationError as exc:
                assert host in str(exc)
                return
    one_each(results, n)
    for error in failures(results).values():
        assert isinstance(error, UnreachableError), repr(error)
        assert host in str(error)
    assert len(failures(results)) == n


# -- h. hostile servers -------------------------------------------------------------------------

SMALL = ResponseLimits(
    max_header_bytes=64 * 1024,
    max_body_bytes=1 << 20,
    max_line_bytes=64 * 1024,
    max_event_bytes=256 * 1024,
    read_idle_timeout=0.5,
)

HOSTILE: dict[str, tuple[SimConfig, type[ProviderError] | None]] = {
    "huge headers": (
        SimConfig(fault_huge_headers=1.0, huge_header_bytes=4 << 20),
        ResponseTooLargeError,
    ),
    # big enough to cross the limit, small enough not to hurt if a limit is missing
    "32 MiB body": (
        SimConfig(fault_huge_body=1.0, huge_body_bytes=32 << 20),
        ResponseTooLargeError,
    ),
    "endless body": (SimConfig(fault_huge_body=1.0), ResponseTooLargeError),
    "endless SSE line": (SimConfig(fault_endless_sse_line=1.0), ResponseTooLargeError),
    "silent stream": (SimConfig(fault_silent_stream=1.0), APITimeoutError),
    "trickle": (SimConfig(fault_trickle=1.0, trickle_interval=0.1), APITimeoutError),
    "1xx interim": (SimConfig(fault_interim_1xx=1.0), None),
}


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("case", list(HOSTILE))
@BOTH
async def test_hostile_server_batch_one_record_each_bounded_memory(make: Make, case: str) -> None:
    config, error_class = HOSTILE[case]
    n = 6
    rss_before = _max_rss_mib()
    with anyio.fail_after(30):
        async with servers(config) as (srv,):
            spec = make(srv, timeout=1.0, response_limits=SMALL)
            async with Synth(
                [spec],
                max_concurrency=n,
                retry=RetryPolicy(max_attempts=2, base=0.005, cap=0.02),
                breaker=NO_BREAKER,
            ) as synth:
                results = await synth.generate_batch([f"q{i}" for i in range(n)], max_tokens=8)
    one_each(results, n)
    if error_class is None:
        assert failures(results) == {}
        assert all(isinstance(r, Completion) and r.text for r in results)
    else:
        assert len(failures(results)) == n
        for error in failures(results).values():
            assert isinstance(error, error_class), repr(error)
            assert not isinstance(error, PoolTimeoutError), repr(error)
    assert _max_rss_mib() - rss_before < 200


@pytest.mark.parametrize(
    "case", ["endless SSE line", "silent stream", "endless body", "1xx interim"]
)
@BOTH
async def test_hostile_server_stream_ends_with_the_right_error(make: Make, case: str) -> None:
    config, error_class = HOSTILE[case]
    with anyio.fail_after(30):
        async with servers(config) as (srv,):
            spec = make(srv, timeout=1.0, response_limits=SMALL)
            async with Synth(
                [spec], retry=RetryPolicy(max_attempts=2, base=0.005, cap=0.02), breaker=NO_BREAKER
            ) as synth:
                if error_class is None:
                    events = [e async for e in synth.generate_stream("A story.", max_tokens=20)]
                    assert any(isinstance(e, TextDelta) for e in events)
                    return
                with pytest.raises(ProviderError) as info:
                    async for _ in synth.generate_stream("A story.", max_tokens=20):
                        pass
    assert isinstance(info.value, error_class), repr(info.value)
    assert synth.metrics().failed == 1


@BOTH
async def test_redirect_is_reported_with_its_location_not_followed(make: Make) -> None:
    """A base URL that redirects: never followed (the key would go along), and the
    user is told where it points: on every input's record, or in the one error that
    stops the job (the only deployment cannot serve anything)."""
    location = "https://elsewhere.test/v1/moved"
    config = SimConfig(fault_redirect=1.0, redirect_status=301, redirect_location=location)
    n, concurrency = 50, 4
    with anyio.fail_after(30):
        async with servers(config) as (srv,):
            async with Synth([make(srv)], max_concurrency=concurrency, retry=FAST_RETRY) as synth:
                try:
                    results = await synth.generate_batch([f"q{i}" for i in range(n)], max_tokens=8)
                except ConfigurationError as exc:
                    assert location in str(exc)
                    assert requests_to(srv) <= concurrency + 4
                    return
    one_each(results, n)
    errors = failures(results)
    assert len(errors) == n
    for error in errors.values():
        assert isinstance(error, RedirectError), repr(error)
        assert error.location == location
        assert location in str(error)
    assert requests_to(srv) == n  # a redirect is not retried (nor followed)


# -- i. everything at once ------------------------------------------------------------------------


@BOTH
async def test_mixed_chaos_every_input_ends_as_exactly_one_record(make: Make) -> None:
    n = 600
    config = SimConfig(
        fault_429=0.04,
        retry_after=0.01,
        fault_500=0.04,
        fault_529=0.04,
        fault_timeout=0.02,
        hang=5.0,
        fault_reset=0.04,
        fault_malformed=0.04,
        fault_truncate=0.04,
        fault_stream_error=0.04,
        fault_interim_1xx=0.04,
        forbidden=0.01,
        seed=11,
    )
    prompts = [f"mixed {i}" for i in range(n)]
    sim = Simulator(config)
    blocked = {i for i, p in enumerate(prompts) if sim.is_forbidden(p)}
    with anyio.fail_after(60):
        async with servers(config) as (srv,):
            async with Synth(
                [make(srv, timeout=0.5)], max_concurrency=32, retry=FAST_RETRY, breaker=NO_BREAKER
            ) as synth:
                results = await synth.generate_batch(prompts, max_tokens=8)
    one_each(results, n)
    failed = failures(results)
    assert blocked <= set(failed)
    assert all(isinstance(failed[i], PermissionDeniedError) for i in blocked)
    assert all(isinstance(e, ProviderError) for e in failed.values())
    # 4 attempts at ~0.3 fault rate: an unblocked input fails with p ~ 1%
    assert len(set(failed) - blocked) <= 0.03 * n
    assert sum(srv.stats.faults.values()) > 0.2 * n
