"""Router unit tests: a scripted provider and a fake clock, no sleeps."""

from __future__ import annotations

import contextlib
import random
from collections import deque
from collections.abc import AsyncIterator

import anyio
import anyio.lowlevel
import pytest

from agentic_synth import (
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ModelSpec,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    PoolTimeoutError,
    QuotaExceededError,
    RateLimitedError,
    RedirectError,
    ServerError,
    UnreachableError,
)
from agentic_synth._exceptions import ProviderError
from agentic_synth._types import ProviderResponse, ProviderStreamEnd, Request, TextDelta, Usage
from agentic_synth.monitor import Metrics
from agentic_synth.routing import (
    BreakerConfig,
    BreakerState,
    NoModelAvailableError,
    RetryPolicy,
    Router,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await anyio.lowlevel.checkpoint()


class ManualClock:
    """A clock that only moves when the test says so; sleepers wake when it passes them."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []
        self._sleepers: list[tuple[float, anyio.Event]] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        entry = (self.now + seconds, anyio.Event())
        self._sleepers.append(entry)
        try:
            await entry[1].wait()
        finally:
            self._sleepers.remove(entry)

    async def advance(self, seconds: float) -> None:
        self.now += seconds
        for target, event in list(self._sleepers):
            if target <= self.now:
                event.set()
        for _ in range(20):
            await anyio.lowlevel.checkpoint()


class Scripted:
    """Answers from a script per model: an exception instance to raise, or 'ok'."""

    name = "sim"

    def __init__(self, scripts: dict[str, list[object]], default: object = "ok") -> None:
        self.scripts = {k: deque(v) for k, v in scripts.items()}
        self.default = default
        self.calls: list[str] = []

    def _next(self, model: str) -> object:
        self.calls.append(model)
        script = self.scripts.get(model)
        return script.popleft() if script else self.default

    async def complete(self, model: str, request: Request) -> ProviderResponse:
        step = self._next(model)
        await anyio.lowlevel.checkpoint()
        if isinstance(step, BaseException):
            raise step
        return ProviderResponse(text=f"from {model}", finish_reason="end_turn", usage=Usage(3, 5))

    async def stream(
        self, model: str, request: Request
    ) -> AsyncIterator[TextDelta | ProviderStreamEnd]:
        step = self._next(model)
        if isinstance(step, BaseException):
            raise step
        if step == "fail-mid":
            yield TextDelta("partial ")
            raise OverloadedError("overloaded mid-stream", status=529)
        for word in ("a ", "b ", "c"):
            yield TextDelta(word)
        yield ProviderStreamEnd(finish_reason="end_turn", usage=Usage(3, 3))

    async def aclose(self) -> None:
        return None


def make_router(
    provider: Scripted,
    names: list[str],
    clock: Clock,
    *,
    strategy: str = "priority",
    retry: RetryPolicy | None = None,
    breaker: BreakerConfig | None = None,
    deadline: float | None = 300.0,
) -> tuple[Router, Metrics]:
    metrics = Metrics(clock)
    specs = [ModelSpec("sim", n) for n in names]
    router = Router(
        [(s, provider) for s in specs],  # type: ignore[misc]
        metrics=metrics,
        strategy=strategy,
        retry=retry or RetryPolicy(max_attempts=3, base=0.1, cap=1.0, rng=random.Random(5).random),
        breaker=breaker,
        deadline=deadline,
        clock=clock,
        sleep=clock.sleep,
        rng=random.Random(7),
    )
    return router, metrics


REQ = Request(messages=[{"role": "user", "content": "hi"}], max_tokens=16)


async def test_retry_then_success_on_same_model() -> None:
    clock = Clock()
    p = Scripted({"a": [ServerError("boom", status=500), "ok"]})
    router, metrics = make_router(p, ["a", "b"], clock)
    routed = await router.complete(REQ)
    assert (routed.model, routed.attempts, routed.fallbacks) == ("sim:a", 2, ())
    assert p.calls == ["a", "a"]
    assert metrics.retries == 1


async def test_fallback_after_retries_exhausted() -> None:
    clock = Clock()
    p = Scripted({"a": [ServerError("boom", status=500)] * 3})
    router, metrics = make_router(p, ["a", "b"], clock)
    routed = await router.complete(REQ)
    assert routed.model == "sim:b"
    assert routed.fallbacks == ("sim:a",)
    assert routed.attempts == 4
    assert metrics.fallbacks == 1


async def test_retry_after_is_honoured() -> None:
    clock = Clock()
    p = Scripted({"a": [RateLimitedError("slow", status=429, retry_after=7.0), "ok"]})
    router, _ = make_router(p, ["a"], clock)
    await router.complete(REQ)
    assert clock.slept and clock.slept[0] >= 7.0


@pytest.mark.parametrize("status", [400, 404, 413, 422])
async def test_client_errors_fail_at_once_and_never_open_breaker(status: int) -> None:
    clock = Clock()
    p = Scripted({"a": [BadRequestError("bad", status=status)] * 10})
    router, _ = make_router(p, ["a", "b"], clock, breaker=BreakerConfig(failure_threshold=2))
    for _ in range(5):
        with pytest.raises(BadRequestError) as info:
            await router.complete(REQ)
        assert info.value.attempts == 1
    assert p.calls == ["a"] * 5
    assert router.breaker_state("sim:a") is BreakerState.CLOSED


async def test_a_few_auth_failures_fail_their_inputs_only() -> None:
    """One 403 is a blocked prompt, not a dead key: that input fails, nothing else."""
    clock = Clock()
    p = Scripted({"a": ["ok", PermissionDeniedError("blocked", status=403), "ok"]})
    router, _ = make_router(p, ["a", "b"], clock)
    assert (await router.complete(REQ)).model == "sim:a"
    with pytest.raises(PermissionDeniedError) as info:
        await router.complete(REQ)
    assert info.value.attempts == 1
    assert (await router.complete(REQ)).model == "sim:a"  # still in rotation
    assert p.calls == ["a", "a", "a"]
    assert router.breaker_state("sim:a") is BreakerState.CLOSED


async def test_repeated_auth_failures_take_a_deployment_out_for_a_cooldown() -> None:
    clock = Clock()
    bad = [AuthenticationError("invalid x-api-key", status=401)] * 3
    p = Scripted({"a": ["ok", *bad]})
    router, _ = make_router(p, ["a", "b"], clock, breaker=BreakerConfig(cooldown=60.0))
    await router.complete(REQ)
    for _ in range(2):  # below auth_failures=3: those inputs fail, a stays in
        with pytest.raises(AuthenticationError):
            await router.complete(REQ)
    # the third in a row takes a out; this request falls back to b
    routed = await router.complete(REQ)
    assert (routed.model, routed.fallbacks) == ("sim:b", ("sim:a",))
    assert router.breaker_state("sim:a") is BreakerState.OPEN
    assert (await router.complete(REQ)).model == "sim:b"  # a is out of rotation
    clock.now += 60.0  # ...for the cooldown only: the probe brings it back
    assert (await router.complete(REQ)).model == "sim:a"
    assert router.breaker_state("sim:a") is BreakerState.CLOSED


async def test_every_key_rejected_stops_the_job() -> None:
    clock = Clock()
    p = Scripted({}, default=AuthenticationError("forbidden", status=401))
    router, _ = make_router(p, ["a", "b"], clock)
    failed_inputs = 0
    with pytest.raises(ConfigurationError, match="API key was rejected") as info:
        for _ in range(100):
            try:
                await router.complete(REQ)
            except AuthenticationError:
                failed_inputs += 1
    assert "sim:a" in str(info.value) and "sim:b" in str(info.value)
    assert len(p.calls) <= 2 * 3  # auth_failures per deployment, then stop
    assert failed_inputs < 6


async def test_quota_exhausted_deployment_leaves_rotation_and_requests_fall_back() -> None:
    clock = Clock()
    p = Scripted({}, default="ok")
    p.scripts["a"] = deque([QuotaExceededError("insufficient_quota", status=429)] * 10)
    router, _ = make_router(p, ["a", "b"], clock, breaker=BreakerConfig(long_cooldown=600.0))
    for _ in range(50):
        assert (await router.complete(REQ)).model == "sim:b"
    assert p.calls.count("a") == 1  # one answer was enough: no retry, no second request
    assert router.breaker_state("sim:a") is BreakerState.OPEN
    clock.now += 599.0
    assert router.breaker_state("sim:a") is BreakerState.OPEN  # a long cooldown


async def test_quota_exhausted_on_the_only_deployment_stops_the_job() -> None:
    clock = Clock()
    p = Scripted({}, default=QuotaExceededError("credit balance is too low", status=400))
    router, _ = make_router(p, ["a"], clock)
    with pytest.raises(ConfigurationError, match="out of credit or quota"):
        await router.complete(REQ)
    assert p.calls == ["a"]


@pytest.mark.parametrize(
    "error",
    [
        NotFoundError("model: nope", status=404),
        RedirectError("moved", status=301, location="https://elsewhere/v1"),
    ],
)
async def test_wrong_model_or_url_falls_back_and_alone_stops(error: Exception) -> None:
    clock = Clock()
    p = Scripted({"a": [error] * 5})
    router, _ = make_router(p, ["a", "b"], clock)
    assert (await router.complete(REQ)).model == "sim:b"
    assert (await router.complete(REQ)).model == "sim:b"
    assert p.calls == ["a", "b", "b"]
    p2 = Scripted({}, default=error)
    alone, _ = make_router(p2, ["a"], clock)
    with pytest.raises(ConfigurationError, match="no model can serve"):
        await alone.complete(REQ)


async def test_should_retry_false_falls_back_instead_of_retrying() -> None:
    clock = Clock()
    no_retry = ServerError("busy", status=503)
    no_retry.should_retry = False
    p = Scripted({"a": [no_retry]})
    router, _ = make_router(p, ["a", "b"], clock)
    routed = await router.complete(REQ)
    assert (routed.model, p.calls) == ("sim:b", ["a", "b"])
    assert clock.slept == []  # no backoff spent on a
    p2 = Scripted({"a": [no_retry]})
    alone, _ = make_router(p2, ["a"], clock)
    with pytest.raises(ServerError):
        await alone.complete(REQ)
    assert p2.calls == ["a"]


async def test_long_retry_after_goes_to_an_idle_fallback_instead_of_sleeping() -> None:
    clock = Clock()
    p = Scripted({"a": [RateLimitedError("slow down", status=429, retry_after=60.0)]})
    router, _ = make_router(p, ["a", "b"], clock)
    assert (await router.complete(REQ)).model == "sim:b"
    assert clock.slept == []  # did not sleep the 60 s on a
    assert (await router.complete(REQ)).model == "sim:b"  # a is throttled: not even tried
    assert p.calls == ["a", "b", "b"]
    clock.now += 61.0
    assert (await router.complete(REQ)).model == "sim:a"
    # with nowhere else to go, the request waits as the server asked
    p2 = Scripted({"a": [RateLimitedError("slow down", status=429, retry_after=60.0)]})
    alone, _ = make_router(p2, ["a"], clock)
    assert (await alone.complete(REQ)).model == "sim:a"
    assert clock.slept and clock.slept[-1] >= 60.0


async def test_rate_limit_headers_on_error_responses_update_the_limiter() -> None:
    clock = Clock()
    throttled = RateLimitedError("slow", status=429, retry_after=0.0)
    throttled.headers = {
        "x-ratelimit-limit-requests": "30",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "2s",
    }
    p = Scripted({"a": [throttled]})
    spec = ModelSpec("sim", "a", rpm=600)
    router = Router(
        [(spec, p)],  # type: ignore[list-item]
        metrics=Metrics(clock),
        retry=RetryPolicy(max_attempts=2, base=0.01, cap=0.01),
        clock=clock,
        sleep=clock.sleep,
    )
    await router.complete(REQ)
    lanes = router._model_state()["sim:a"]["rate_limits"]["requests"]
    assert lanes["limit"] == 30.0  # the server's limit, learnt from the 429's headers


async def test_unreachable_host_stops_the_job_within_seconds_naming_the_host() -> None:
    """A host that was never reached: a few inputs fail while the connect failures
    span BreakerConfig.unreachable_after (2 s), then the job stops with one line
    naming the host, instead of minutes of breaker cycles."""
    clock = Clock()
    down = UnreachableError(
        "cannot connect to nohost.invalid:443: name not resolved", host="nohost.invalid"
    )
    p = Scripted({}, default=down)
    router, _ = make_router(p, ["a"], clock)
    start = clock.now
    failed_inputs = 0
    with pytest.raises(ConfigurationError, match=r"nohost\.invalid") as info:
        for _ in range(50):
            try:
                await router.complete(REQ)
            except UnreachableError:
                failed_inputs += 1
    assert "cannot be reached" in str(info.value)
    assert 2.0 <= clock.now - start < 5.0  # seconds, not minutes
    assert failed_inputs < 20 and len(p.calls) < 60
    assert router.transitions[-1][3] == "open"  # out; no breaker cycling before it


async def test_a_burst_of_connect_failures_alone_does_not_stop_the_job() -> None:
    """One wave of concurrent requests failing to connect at the same instant (a DNS
    blip at start) is not 'unreachable': the run must span unreachable_after."""
    clock = Clock()
    blip = UnreachableError("cannot connect to h:443: name not resolved", host="h")
    p = Scripted({"a": [blip] * 5})
    router, _ = make_router(p, ["a"], clock, retry=RetryPolicy(max_attempts=8, base=0.01, cap=0.01))
    assert (await router.complete(REQ)).model == "sim:a"


async def test_unreachable_after_serving_only_takes_the_deployment_out() -> None:
    clock = Clock()
    down = UnreachableError("cannot connect to gpu-box:8000: refused", host="gpu-box")
    p = Scripted({"a": ["ok", *[down] * 30]})
    router, _ = make_router(
        p,
        ["a", "b"],
        clock,
        retry=RetryPolicy(max_attempts=20, base=0.5, cap=0.5, rng=random.Random(3).random),
    )
    await router.complete(REQ)
    routed = await router.complete(REQ)  # a restarts: requests go to b meanwhile
    assert routed.model == "sim:b"
    assert router.breaker_state("sim:a") is BreakerState.OPEN
    assert await router.complete(REQ)  # never a stop: a deployment that served may return


async def test_pool_timeouts_are_retried_and_never_open_the_breaker() -> None:
    clock = Clock()
    busy = PoolTimeoutError("no free connection in time")
    p = Scripted({"a": [busy, busy, "ok"]})
    router, _ = make_router(p, ["a"], clock, breaker=BreakerConfig(failure_threshold=1))
    assert (await router.complete(REQ)).model == "sim:a"
    assert router.transitions == []


async def test_the_deadline_covers_admission_and_the_call() -> None:
    """The call's timeout is what is left of the deadline after waiting for the limits."""
    clock = Clock()
    seen: list[float | None] = []

    class Recording(Scripted):
        async def complete(self, model: str, request: Request) -> ProviderResponse:
            seen.append(request.timeout)
            return await super().complete(model, request)

    spec = ModelSpec("sim", "a", rpm=1, timeout=600.0)
    router = Router(
        [(spec, Recording({}))],  # type: ignore[list-item]
        metrics=Metrics(clock),
        deadline=100.0,
        clock=clock,
        sleep=clock.sleep,
    )
    await router.complete(REQ)  # takes the one request of the minute
    start = clock.now
    await router.complete(REQ)  # waits ~60 s for the bucket
    waited = clock.now - start
    assert waited >= 59.0
    assert seen[0] == pytest.approx(100.0)
    assert seen[1] is not None and seen[1] <= 100.0 - waited + 1e-6


async def test_breaker_opens_half_opens_and_closes_on_the_clock() -> None:
    clock = Clock()
    p = Scripted({"a": [ServerError("x", status=500)] * 6})
    router, _ = make_router(
        p,
        ["a", "b"],
        clock,
        retry=RetryPolicy(max_attempts=1),
        breaker=BreakerConfig(failure_threshold=3, cooldown=60.0),
    )
    for _ in range(3):
        assert (await router.complete(REQ)).model == "sim:b"
    assert router.breaker_state("sim:a") is BreakerState.OPEN
    calls_before = p.calls.count("a")
    assert (await router.complete(REQ)).model == "sim:b"
    assert p.calls.count("a") == calls_before  # open: not tried
    clock.now += 60.0
    assert router.breaker_state("sim:a") is BreakerState.HALF_OPEN
    # the probe fails -> reopens
    assert (await router.complete(REQ)).model == "sim:b"
    assert router.breaker_state("sim:a") is BreakerState.OPEN
    clock.now += 60.0
    p.scripts["a"].clear()  # a has recovered
    assert (await router.complete(REQ)).model == "sim:a"
    assert router.breaker_state("sim:a") is BreakerState.CLOSED
    states = [(m, old, new) for _, m, old, new in router.transitions]
    assert states == [
        ("sim:a", "closed", "open"),
        ("sim:a", "open", "half_open"),
        ("sim:a", "half_open", "open"),
        ("sim:a", "open", "half_open"),
        ("sim:a", "half_open", "closed"),
    ]


async def test_breaker_cooldown_follows_longer_retry_after() -> None:
    clock = Clock()
    p = Scripted({"a": [OverloadedError("busy", status=529, retry_after=120.0)]})
    router, _ = make_router(
        p,
        ["a", "b"],
        clock,
        retry=RetryPolicy(max_attempts=1),
        breaker=BreakerConfig(failure_threshold=1, cooldown=10.0),
    )
    await router.complete(REQ)
    clock.now += 60.0
    assert router.breaker_state("sim:a") is BreakerState.OPEN
    clock.now += 61.0
    assert router.breaker_state("sim:a") is BreakerState.HALF_OPEN


async def test_all_open_waits_for_earliest_reopen() -> None:
    clock = Clock()
    p = Scripted({"a": [ServerError("x", status=500)], "b": [ServerError("y", status=500)]})
    router, _ = make_router(
        p,
        ["a", "b"],
        clock,
        retry=RetryPolicy(max_attempts=1),
        breaker=BreakerConfig(failure_threshold=1, cooldown=30.0),
    )
    start = clock.now
    # both fail once -> both open; the request waits for a reopening, then the probe succeeds
    routed = await router.complete(REQ)
    assert routed.model in ("sim:a", "sim:b") and routed.attempts == 3
    assert 30.0 <= clock.now - start <= 33.0  # the reopening, plus up to 10% jitter


async def test_all_open_past_deadline_gives_up() -> None:
    clock = Clock()
    p = Scripted({"a": [ServerError("x", status=500)]})
    router, _ = make_router(
        p,
        ["a"],
        clock,
        retry=RetryPolicy(max_attempts=1),
        breaker=BreakerConfig(failure_threshold=1, cooldown=600.0),
        deadline=60.0,
    )
    with pytest.raises(ServerError):
        await router.complete(REQ)
    with pytest.raises(NoModelAvailableError, match="before its deadline") as info:
        await router.complete(REQ)
    assert "sim:a: open" in str(info.value) and "reopens in" in str(info.value)


async def test_half_open_admits_exactly_the_probes_under_concurrency() -> None:
    clock = Clock()
    gate = anyio.Event()

    class Slow(Scripted):
        async def complete(self, model: str, request: Request) -> ProviderResponse:
            if model == "a" and self.scripts["a"]:
                return await super().complete(model, request)
            self.calls.append(model)
            if model == "a":
                await gate.wait()
            return ProviderResponse("ok", "end_turn", Usage(1, 1))

    p = Slow({"a": [ServerError("x", status=500)]})
    router, _ = make_router(
        p,
        ["a", "b"],
        clock,
        retry=RetryPolicy(max_attempts=1),
        breaker=BreakerConfig(failure_threshold=1, cooldown=5.0, half_open_probes=2),
    )
    await router.complete(REQ)
    clock.now += 5.0
    p.calls.clear()
    results: list[str] = []

    async def one() -> None:
        results.append((await router.complete(REQ)).model)

    async with anyio.create_task_group() as tg:
        for _ in range(300):
            tg.start_soon(one)
        for _ in range(20):
            await anyio.lowlevel.checkpoint()
        assert p.calls.count("a") == 2  # exactly the probes
        gate.set()
    assert results.count("sim:a") == 2 and results.count("sim:b") == 298
    assert router.breaker_state("sim:a") is BreakerState.CLOSED


async def test_stream_falls_back_before_first_token_and_raises_after() -> None:
    clock = Clock()
    p = Scripted({"a": [ServerError("x", status=500)] * 3})
    router, _ = make_router(p, ["a", "b"], clock)
    from agentic_synth.routing import Routed

    routed = Routed("", 0, ())
    text = [e.text async for e in router.stream(REQ, routed) if isinstance(e, TextDelta)]
    assert "".join(text) == "a b c" and routed.model == "sim:b" and routed.fallbacks == ("sim:a",)

    p2 = Scripted({"a": ["fail-mid"]})
    router2, _ = make_router(p2, ["a", "b"], clock)
    got: list[str] = []
    with pytest.raises(OverloadedError):
        async for e in router2.stream(REQ, Routed("", 0, ())):
            if isinstance(e, TextDelta):
                got.append(e.text)
    assert got == ["partial "]  # no silent restart, no duplicate text
    assert p2.calls == ["a"]


@pytest.mark.parametrize("strategy", ["round_robin", "weighted"])
async def test_spreading_strategies_use_every_model(strategy: str) -> None:
    clock = Clock()
    p = Scripted({})
    router, _ = make_router(p, ["a", "b", "c"], clock, strategy=strategy)
    for _ in range(60):
        await router.complete(REQ)
    assert set(p.calls) == {"a", "b", "c"}
    if strategy == "round_robin":
        assert p.calls[:6] == ["a", "b", "c", "a", "b", "c"]


async def test_least_busy_sends_each_request_to_the_model_with_fewest_in_flight() -> None:
    clock = Clock()
    gate = anyio.Event()

    class Held(Scripted):
        async def complete(self, model: str, request: Request) -> ProviderResponse:
            self.calls.append(model)
            await gate.wait()
            return ProviderResponse("ok", "end_turn", Usage(1, 1))

    p = Held({})
    router, _ = make_router(p, ["a", "b", "c"], clock, strategy="least_busy")
    async with anyio.create_task_group() as tg:
        for _ in range(30):
            tg.start_soon(router.complete, REQ)
            await anyio.lowlevel.checkpoint()
        assert sorted(p.calls.count(m) for m in "abc") == [10, 10, 10]
        gate.set()


async def test_least_latency_prefers_the_fastest_model_per_token() -> None:
    clock = Clock()
    seconds = {"a": 0.5, "b": 0.1, "c": 0.3}

    class Timed(Scripted):
        async def complete(self, model: str, request: Request) -> ProviderResponse:
            self.calls.append(model)
            clock.now += seconds[model]
            await anyio.lowlevel.checkpoint()
            return ProviderResponse("ok", "end_turn", Usage(1, 5))

    p = Timed({})
    router, _ = make_router(p, ["a", "b", "c"], clock, strategy="least_latency")
    for _ in range(100):
        await router.complete(REQ)
    assert set(p.calls[:3]) == {"a", "b", "c"}  # each measured first
    assert p.calls.count("b") >= 85  # then the fastest, but for ~5% exploration
    assert p.calls[3:].count("a") >= 1 or p.calls[3:].count("c") >= 1  # exploration happened


async def test_half_open_probe_holds_concurrent_requests_instead_of_failing_them() -> None:
    """One model, 16 concurrent, the first 8 calls fail, cooldown 1 s: all 200 succeed.

    Before: when the cooldown ended the first request took the probe and every
    concurrent request failed at once with NoModelAvailableError (9 of 200 succeeded).
    """
    clock = ManualClock()
    p = Scripted({"a": [ServerError("boom", status=500)] * 8})
    router, metrics = make_router(
        p,
        ["a"],
        clock,  # type: ignore[arg-type]
        retry=RetryPolicy(max_attempts=4, base=0.1, cap=0.2),
        breaker=BreakerConfig(cooldown=1.0),
    )
    outcomes: list[str] = []
    limit = anyio.Semaphore(16)

    async def one() -> None:
        async with limit:
            try:
                outcomes.append((await router.complete(REQ)).model)
            except ProviderError as exc:
                outcomes.append(type(exc).__name__)

    async with anyio.create_task_group() as tg:
        for _ in range(200):
            tg.start_soon(one)
        for _ in range(400):
            if len(outcomes) == 200:
                break
            await clock.advance(0.05)
    assert outcomes == ["sim:a"] * 200
    assert router.breaker_state("sim:a") is BreakerState.CLOSED
    assert metrics.breaker_rejections > 0  # requests did meet the open / probing breaker


async def test_waiters_for_a_reopening_are_spread_by_jitter() -> None:
    clock = ManualClock()
    p = Scripted({"a": [ServerError("x", status=500)]})
    router, _ = make_router(
        p,
        ["a"],
        clock,  # type: ignore[arg-type]
        retry=RetryPolicy(max_attempts=1),
        breaker=BreakerConfig(failure_threshold=1, cooldown=30.0),
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(router.complete, REQ)  # fails: the breaker opens, it waits too
        await clock.advance(0)
        assert router.breaker_state("sim:a") is BreakerState.OPEN
        for _ in range(19):
            tg.start_soon(router.complete, REQ)
        await clock.advance(0)
        waits = list(clock.slept)
        await clock.advance(30.0)
        for _ in range(40):
            await clock.advance(0.1)
    assert len(waits) == 20
    assert all(30.0 <= w <= 33.0 for w in waits)
    assert len(set(waits)) == 20  # not one herd at the same instant


def test_bad_router_config() -> None:
    with pytest.raises(ConfigurationError, match="strategy"):
        make_router(Scripted({}), ["a"], Clock(), strategy="fastest")
    with pytest.raises(ConfigurationError, match="deadline"):
        make_router(Scripted({}), ["a"], Clock(), deadline=-1)
    with pytest.raises(ConfigurationError):
        Router([], metrics=Metrics())


async def test_errors_carry_model_and_attempts() -> None:
    clock = Clock()
    p = Scripted({}, default=ServerError("down", status=503))
    router, _ = make_router(p, ["a"], clock, breaker=BreakerConfig(failure_threshold=100))
    with pytest.raises(ProviderError) as info:
        await router.complete(REQ)
    assert info.value.model == "sim:a" and info.value.attempts == 3


async def test_client_side_rpm_limit_spaces_requests_and_429_cuts_the_rate() -> None:
    clock = Clock()
    p = Scripted({"a": ["ok"] * 5 + [RateLimitedError("slow", status=429, retry_after=0.0)]})
    metrics = Metrics(clock)
    spec = ModelSpec("sim", "a", rpm=60)  # one request per second, burst of one minute's worth
    router = Router(
        [(spec, p)],  # type: ignore[list-item]
        metrics=metrics,
        retry=RetryPolicy(max_attempts=3, base=0.01, cap=0.01),
        clock=clock,
        sleep=clock.sleep,
    )
    for _ in range(7):  # the 6th call gets a 429: AIMD halves the rate
        await router.complete(REQ)
    state = router._model_state()["sim:a"]["rate_limits"]
    assert (state["rate_limited"], state["multiplier"], state["requests"]["rate"]) == (1, 0.5, 30.0)
    start = clock.now
    for _ in range(40):  # more than the halved bucket holds: the last ones wait on the clock
        await router.complete(REQ)
    assert clock.now - start >= 10 / 0.5 * 0.9  # ~10+ requests past the burst, at <= 0.5+/s


async def test_breaker_transitions_are_logged_through_stdlib_logging(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    p = Scripted({"a": [ServerError("x", status=500)]})
    router, _ = make_router(
        p,
        ["a", "b"],
        clock,
        retry=RetryPolicy(max_attempts=1),
        breaker=BreakerConfig(failure_threshold=1),
    )
    with caplog.at_level("WARNING", logger="agentic_synth.routing"):
        await router.complete(REQ)
    assert any(
        "breaker_transition" in r.getMessage() and "new='open'" in r.getMessage()
        for r in caplog.records
    )


async def test_max_in_flight_caps_concurrent_calls_per_model() -> None:
    clock = Clock()
    live = peak = 0

    class Counting(Scripted):
        async def complete(self, model: str, request: Request) -> ProviderResponse:
            nonlocal live, peak
            live += 1
            peak = max(peak, live)
            for _ in range(3):
                await anyio.lowlevel.checkpoint()
            live -= 1
            return ProviderResponse("ok", "end_turn", Usage(1, 1))

    spec = ModelSpec("sim", "a", max_in_flight=2)
    router = Router([(spec, Counting({}))], metrics=Metrics(clock), clock=clock)  # type: ignore[list-item]
    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(router.complete, REQ)
    assert peak == 2
    assert router._model_state()["sim:a"]["in_flight"] == 0


async def test_a_burst_of_blocked_prompts_never_stops_the_job() -> None:
    """Inputs sorted by topic: several content-blocked prompts in a row, on a fresh
    deployment and on one that has served. Each fails alone; the job goes on."""
    clock = Clock()
    blocked = PermissionDeniedError("content blocked by gateway policy", status=403)
    p = Scripted({"a": [blocked] * 5 + ["ok"] + [blocked] * 5 + ["ok"]})
    router, _ = make_router(p, ["a"], clock)
    outcomes = []
    for _ in range(12):
        try:
            outcomes.append((await router.complete(REQ)).model)
        except PermissionDeniedError:
            outcomes.append("403")
    assert outcomes == ["403"] * 5 + ["sim:a"] + ["403"] * 5 + ["sim:a"]
    assert router.breaker_state("sim:a") is BreakerState.CLOSED


async def test_a_long_run_of_403s_takes_the_deployment_out_but_never_stops_a_served_job() -> None:
    clock = Clock()
    blocked = PermissionDeniedError("permission denied", status=403)
    p = Scripted({"a": ["ok", *[blocked] * 40]})
    router, _ = make_router(p, ["a", "b"], clock, breaker=BreakerConfig(forbidden_failures=4))
    await router.complete(REQ)
    results = []
    for _ in range(6):
        try:
            results.append((await router.complete(REQ)).model)
        except PermissionDeniedError:
            results.append("403")
    # three fail alone; the fourth takes a out (that input is not retried on a: b serves it)
    assert results == ["403", "403", "403", "sim:b", "sim:b", "sim:b"]
    assert router.breaker_state("sim:a") is BreakerState.OPEN
    assert p.calls.count("a") == 5


async def test_a_fresh_deployment_refusing_every_request_stops_the_job() -> None:
    clock = Clock()
    p = Scripted({}, default=PermissionDeniedError("no access to this model", status=403))
    router, _ = make_router(p, ["a"], clock, breaker=BreakerConfig(forbidden_failures=5))
    with pytest.raises(ConfigurationError, match="403"):
        for _ in range(20):
            with contextlib.suppress(PermissionDeniedError):
                await router.complete(REQ)
    assert len(p.calls) == 5


async def test_while_nothing_can_serve_new_inputs_wait_instead_of_failing() -> None:
    """A served deployment out for longer than the request deadline (quota: 600 s,
    deadline 300 s): before, every remaining input failed at once with
    NoModelAvailableError; now new inputs wait at the scheduler's gate."""
    clock = Clock()
    p = Scripted({"a": ["ok", QuotaExceededError("insufficient_quota", status=429)]})
    router, _ = make_router(p, ["a"], clock)
    outcomes: list[str] = []
    for _ in range(50):
        gate = router.admit()  # what the scheduler does before each input
        if gate is not None:
            await gate
        try:
            outcomes.append((await router.complete(REQ)).model)
        except ProviderError as exc:
            outcomes.append(type(exc).__name__)
    assert outcomes[:3] == ["sim:a", "QuotaExceededError", "NoModelAvailableError"]
    assert outcomes[3:] == ["sim:a"] * 47  # after the cooldown the probe found it back
    assert clock.now - 1000.0 >= 600.0


async def test_a_very_long_retry_after_pauses_the_job_rather_than_failing_it() -> None:
    clock = Clock()
    p = Scripted({"a": ["ok", RateLimitedError("daily limit", status=429, retry_after=3600.0)]})
    router, _ = make_router(p, ["a"], clock)
    outcomes: list[str] = []
    for _ in range(20):
        gate = router.admit()
        if gate is not None:
            await gate
        try:
            outcomes.append((await router.complete(REQ)).model)
        except ProviderError as exc:
            outcomes.append(type(exc).__name__)
    assert outcomes[:2] == ["sim:a", "RateLimitedError"]
    assert outcomes.count("sim:a") == 19
    assert clock.now - 1000.0 >= 3600.0


async def test_without_a_deadline_a_spent_request_ends_instead_of_waiting_forever() -> None:
    clock = Clock()
    p = Scripted({"a": [ServerError("x", status=500)] * 3})
    router, _ = make_router(p, ["a"], clock, deadline=None)
    with anyio.fail_after(5):
        with pytest.raises(ServerError):
            await router.complete(REQ)
    assert (await router.complete(REQ)).model == "sim:a"


async def test_timeouts_of_calls_cut_to_the_deadline_do_not_open_the_breaker() -> None:
    """Queued behind max_in_flight, a call gets what is left of the deadline; its
    timeout is the request's budget running out, not the provider failing."""
    clock = ManualClock()

    class TwoSeconds(Scripted):
        async def complete(self, model: str, request: Request) -> ProviderResponse:
            self.calls.append(model)
            if request.timeout is not None and request.timeout < 2.0:
                await clock.sleep(request.timeout)
                raise APITimeoutError("no answer in time", model=model)
            await clock.sleep(2.0)
            return ProviderResponse("ok", "end_turn", Usage(1, 1))

    spec = ModelSpec("sim", "a", max_in_flight=2)
    router = Router(
        [(spec, TwoSeconds({}))],  # type: ignore[list-item]
        metrics=Metrics(clock),
        deadline=5.0,
        breaker=BreakerConfig(failure_threshold=2),
        retry=RetryPolicy(max_attempts=1),
        clock=clock,
        sleep=clock.sleep,
        rng=random.Random(1),
    )
    outcomes: list[str] = []

    async def one() -> None:
        try:
            await router.complete(REQ)
            outcomes.append("ok")
        except ProviderError as exc:
            outcomes.append(type(exc).__name__)

    async with anyio.create_task_group() as tg:
        for _ in range(12):
            tg.start_soon(one)
        for _ in range(100):
            if len(outcomes) == 12:
                break
            await clock.advance(0.25)
    assert outcomes.count("ok") == 4 and len(outcomes) == 12
    assert router.transitions == []  # our queueing never counted against the provider


async def test_a_probe_answered_with_a_client_error_closes_the_breaker() -> None:
    """A 429 or 4xx answer proves the server is up: the deployment goes back to full
    concurrency instead of one request at a time."""
    clock = Clock()
    p = Scripted({"a": [ServerError("x", status=500), RateLimitedError("busy", status=429), "ok"]})
    router, _ = make_router(
        p,
        ["a", "b"],
        clock,
        retry=RetryPolicy(max_attempts=1),
        breaker=BreakerConfig(failure_threshold=1, cooldown=10.0),
    )
    assert (await router.complete(REQ)).model == "sim:b"  # a opens
    clock.now += 10.0
    assert (await router.complete(REQ)).model == "sim:b"  # the probe gets a 429
    assert router.breaker_state("sim:a") is BreakerState.CLOSED


async def test_coming_back_to_a_model_is_not_a_fallback() -> None:
    clock = Clock()
    p = Scripted({"a": [ServerError("x", status=500)]})
    router, metrics = make_router(
        p,
        ["a"],
        clock,
        retry=RetryPolicy(max_attempts=1),
        breaker=BreakerConfig(failure_threshold=1, cooldown=5.0),
    )
    routed = await router.complete(REQ)  # fails, waits for the reopening, served by a
    assert (routed.model, routed.fallbacks) == ("sim:a", ())
    assert metrics.fallbacks == 0


async def test_waits_are_timed_per_stage_on_the_router_clock() -> None:
    """Backoff before a retry, the wait for a breaker to reopen, and provider time."""
    clock = Clock()
    p = Scripted({"a": [RateLimitedError("slow", status=429, retry_after=7.0), "ok"]})
    router, metrics = make_router(p, ["a"], clock)
    await router.complete(REQ)
    assert metrics.waits["backoff"] == pytest.approx(clock.slept[0]) and clock.slept[0] >= 7.0

    clock = Clock()
    p = Scripted({"a": [ServerError("x", status=500)], "b": [ServerError("y", status=500)]})
    router, metrics = make_router(
        p,
        ["a", "b"],
        clock,
        retry=RetryPolicy(max_attempts=1),
        breaker=BreakerConfig(failure_threshold=1, cooldown=30.0),
    )
    start = clock.now
    await router.complete(REQ)
    assert metrics.waits["breaker"] == pytest.approx(clock.now - start)
    assert metrics.waits["backoff"] == 0.0 and metrics.waits["rate_limit"] == 0.0
