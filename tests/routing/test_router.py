"""Router unit tests: a scripted provider and a fake clock, no sleeps."""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator

import anyio
import anyio.lowlevel
import pytest

from agentic_synth import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ModelSpec,
    OverloadedError,
    RateLimitedError,
    ServerError,
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
        retry=retry or RetryPolicy(max_attempts=3, base=0.1, cap=1.0),
        breaker=breaker,
        deadline=deadline,
        clock=clock,
        sleep=clock.sleep,
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


async def test_auth_failure_on_one_model_falls_back_and_on_all_stops() -> None:
    clock = Clock()
    p = Scripted({"a": [AuthenticationError("no", status=401)]})
    router, _ = make_router(p, ["a", "b"], clock)
    assert (await router.complete(REQ)).model == "sim:b"
    assert (await router.complete(REQ)).model == "sim:b"  # a is out of rotation
    assert p.calls == ["a", "b", "b"]

    p2 = Scripted({}, default=AuthenticationError("forbidden", status=403))
    router2, _ = make_router(p2, ["a", "b"], clock)
    with pytest.raises(ConfigurationError, match="every model rejected"):
        await router2.complete(REQ)


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
    with pytest.raises(ServerError):
        await router.complete(REQ)  # both fail once -> both open
    start = clock.now
    routed = await router.complete(REQ)  # waits for a reopen, then the probe succeeds
    assert routed.model in ("sim:a", "sim:b")
    assert clock.now - start == pytest.approx(30.0, abs=0.01)


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
    with pytest.raises(NoModelAvailableError, match="breaker is open"):
        await router.complete(REQ)


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


@pytest.mark.parametrize("strategy", ["round_robin", "weighted", "least_busy", "least_latency"])
async def test_strategies_spread_or_pick(strategy: str) -> None:
    clock = Clock()
    p = Scripted({})
    router, _ = make_router(p, ["a", "b", "c"], clock, strategy=strategy)
    for _ in range(60):
        await router.complete(REQ)
    used = set(p.calls)
    if strategy in ("round_robin", "weighted"):
        assert used == {"a", "b", "c"}
    else:
        assert used  # least_busy with sequential calls keeps the first; latency explores
    if strategy == "round_robin":
        assert p.calls[:6] == ["a", "b", "c", "a", "b", "c"]


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
