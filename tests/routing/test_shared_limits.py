"""Shared rate limits against a real redis-server: the script's grants, waits and
token costs, settlements, the shared cooldown and AIMD cut, namespaces, the
cross-process bound (N processes never get more than rate x time + burst), and
failing closed when Redis dies or refuses scripts (or, opted in, going local)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable

import anyio
import pytest
import redis.asyncio as aioredis
from redis_helpers import RedisServer, free_port

from agentic_synth import ConfigurationError, ModelSpec, RateLimitedError
from agentic_synth._types import ProviderResponse, Request, Usage
from agentic_synth.monitor import Metrics
from agentic_synth.routing import RetryPolicy, Router, _shared_limits
from agentic_synth.routing._ratelimit import ModelRateLimiter, Reservation
from agentic_synth.routing._shared_limits import (
    RateLimiter,
    SharedLimits,
    SharedLimitsUnavailableError,
)

PASSWORD = "s3cret-pw-4711"


@pytest.fixture
def shared(redis_server: RedisServer) -> RedisServer:
    """The session's server: these tests use only their own namespace."""
    return redis_server


@pytest.fixture
def own(new_redis_server: Callable[..., RedisServer]) -> Callable[..., RedisServer]:
    """Servers of the test's own (to kill, or with commands renamed)."""
    return new_redis_server


@pytest.fixture
def ns() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def spec(**limits: float) -> ModelSpec:
    return ModelSpec("openai:m", base_url="http://deployment.test", **limits)  # type: ignore[arg-type]


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


async def test_both_limiters_fit_the_router_protocol(shared: RedisServer, ns: str) -> None:
    async with SharedLimits(shared.url, namespace=ns) as limits:
        assert isinstance(limits.limiter(spec(rpm=60)), RateLimiter)
    assert isinstance(ModelRateLimiter(60, None, None), RateLimiter)


async def test_grants_up_to_the_burst_then_the_wait_is_the_refill(
    shared: RedisServer, ns: str
) -> None:
    async with SharedLimits(shared.url, namespace=ns, burst_seconds=0.5) as limits:
        lim = limits.limiter(spec(rpm=600))  # 10/s, burst of 5
        assert lim.enabled and lim.try_acquire(0, 0) is None  # sync: await acquire instead
        grants = [await lim.try_acquire_async(0, 0) for _ in range(5)]
        assert all(g is not None for g in grants)
        assert await lim.try_acquire_async(0, 0) is None
        first = grants[0]
        assert first is not None
        # booked: the 6th slot is when the bucket (empty at the 5th) holds one again,
        # 0.1 s after the first grant on Redis' clock
        sixth = await lim.acquire(0, 0)
        assert sixth.acquired_at == pytest.approx(first.acquired_at + 0.1, abs=1e-4)
        raw = aioredis.Redis.from_url(shared.url)
        seconds, micros = await raw.time()
        assert abs(sixth.acquired_at - (seconds + micros / 1e6)) < 1.0  # server time
        await raw.aclose()


async def test_token_lanes_charge_the_amounts(shared: RedisServer, ns: str) -> None:
    async with SharedLimits(shared.url, namespace=ns, burst_seconds=6) as limits:
        lim = limits.limiter(spec(input_tpm=600, output_tpm=600))  # 10/s, bursts of 60
        assert await lim.try_acquire_async(50, 0) is not None
        assert await lim.try_acquire_async(20, 0) is None  # 10 left
        assert 0.9 < await lim.wait_time(20, 0) <= 1.0  # 10 more at 10/s
        assert await lim.try_acquire_async(0, 60) is not None  # the output lane is apart
        assert await lim.try_acquire_async(0, 1) is None
        assert 0.05 < await lim.wait_time(0, 1) <= 0.1

        big = limits.limiter(spec(input_tpm=600), identity="other")
        assert await big.try_acquire_async(100, 0) is not None  # over the burst: a full bucket
        assert 3.9 < await big.wait_time(0, 0) <= 4.0  # 40 in debt at 10/s


async def test_reconcile_returns_and_charges_the_difference(shared: RedisServer, ns: str) -> None:
    async with (
        SharedLimits(shared.url, namespace=ns, burst_seconds=6) as a,
        SharedLimits(shared.url, namespace=ns, burst_seconds=6) as b,
    ):
        la, lb = a.limiter(spec(output_tpm=600)), b.limiter(spec(output_tpm=600))
        r = await la.acquire(0, 50)
        assert await la.try_acquire_async(0, 45) is None
        la.reconcile(r, 10)  # 40 back, carried by the next call
        r2 = await la.try_acquire_async(0, 45)
        assert r2 is not None
        la.reconcile(r2, 75)  # 30 more than reserved
        la.reconcile(r2, 0)  # settled once only
        await la.flush()
        # the other client sees 60 - 50 + 40 - 45 - 30 = -25 (plus a little refill)
        assert 2.4 < await lb.wait_time(0, 0) <= 2.5


async def test_release_gives_every_lane_back(shared: RedisServer, ns: str) -> None:
    async with SharedLimits(shared.url, namespace=ns) as limits:
        lim = limits.limiter(spec(rpm=6, input_tpm=600, output_tpm=600))  # slow refill
        r = await lim.acquire(100, 200)
        await lim.flush()
        snap = lim.snapshot()
        assert snap["requests"]["available"] == pytest.approx(5, abs=0.01)
        lim.release(r)
        lim.release(r)
        await lim.flush()
        assert await lim.wait_time(0, 0) == 0.0
        snap = lim.snapshot()
        assert snap["requests"]["available"] == pytest.approx(6)
        assert snap["input_tokens"]["available"] == pytest.approx(600)
        assert snap["output_tokens"]["available"] == pytest.approx(600)


async def test_a_429s_retry_after_pauses_every_client(shared: RedisServer, ns: str) -> None:
    async with (
        SharedLimits(shared.url, namespace=ns) as a,
        SharedLimits(shared.url, namespace=ns) as b,
    ):
        la, lb = a.limiter(spec(rpm=6)), b.limiter(spec(rpm=6))
        r = await la.acquire(0, 0)
        la.on_rate_limited(r, retry_after=2.0)
        await la.flush()
        assert 1.9 < await lb.wait_time(0, 0) <= 2.0
        assert await lb.try_acquire_async(0, 0) is None
        assert 1.9 < lb.snapshot()["cooled_for"] <= 2.0
        level = lb.snapshot()["requests"]["available"]
        with anyio.move_on_after(0.2):  # a deadline before the cooldown's end
            await lb.acquire(0, 0)
        await lb.flush()
        await lb.wait_time(0, 0)
        # the booking was given back: only refill (0.1/s) since
        assert lb.snapshot()["requests"]["available"] == pytest.approx(level, abs=0.05)


async def test_the_aimd_cut_is_shared(shared: RedisServer, ns: str) -> None:
    async with (
        SharedLimits(shared.url, namespace=ns) as a,
        SharedLimits(shared.url, namespace=ns) as b,
    ):
        la, lb = a.limiter(spec(rpm=600)), b.limiter(spec(rpm=600))
        before = await la.acquire(0, 0)
        la.on_rate_limited(before)
        await la.flush()
        await lb.wait_time(0, 0)
        snap = lb.snapshot()
        assert (snap["multiplier"], snap["rate_limited"]) == (0.5, 1)
        assert (snap["requests"]["rate"], snap["requests"]["capacity"]) == (300, 300)
        lb.on_rate_limited(before)  # granted before the cut: the same wave, no second cut
        await lb.flush()
        assert (lb.snapshot()["multiplier"], lb.snapshot()["rate_limited"]) == (0.5, 1)
        after = await lb.acquire(0, 0)
        lb.on_rate_limited(after)
        await lb.flush()
        assert (lb.snapshot()["multiplier"], lb.snapshot()["rate_limited"]) == (0.25, 2)
        for _ in range(5):
            la.on_rate_limited()  # no reservation: always cuts, never below min_fraction
            await la.flush()
        assert (la.snapshot()["multiplier"], la.snapshot()["rate_limited"]) == (0.05, 7)


async def test_the_shared_cut_recovers_stepwise(shared: RedisServer, ns: str) -> None:
    kw = {"recovery_interval": 0.05, "recovery_step": 0.05}
    async with (
        SharedLimits(shared.url, namespace=ns, **kw) as a,  # type: ignore[arg-type]
        SharedLimits(shared.url, namespace=ns, **kw) as b,  # type: ignore[arg-type]
    ):
        la, lb = a.limiter(spec(rpm=600)), b.limiter(spec(rpm=600))
        la.on_rate_limited()
        await la.flush()
        await anyio.sleep(0.25)  # >= 5 recovery intervals on any clock
        await lb.wait_time(0, 0)
        steps = (lb.snapshot()["multiplier"] - 0.5) / 0.05
        assert steps >= 5 and steps == pytest.approx(round(steps))


async def test_response_headers_are_shared(shared: RedisServer, ns: str) -> None:
    async with (
        SharedLimits(shared.url, namespace=ns) as a,
        SharedLimits(shared.url, namespace=ns) as b,
    ):
        la, lb = a.limiter(spec(rpm=600)), b.limiter(spec(rpm=600))
        la.update_from_headers(
            {
                "x-ratelimit-limit-requests": "300",
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": "2s",
            }
        )
        await la.flush()
        # the server's limit (300/min = 5/s) and nothing left until 2 s from now:
        # 10 requests of debt at 5/s, then one more for this request
        assert 2.1 < await lb.wait_time(0, 0) <= 2.2
        assert lb.snapshot()["requests"]["limit"] == 300


async def test_namespaces_and_deployments_are_apart_and_keys_hold_no_secret(
    shared: RedisServer, ns: str
) -> None:
    async with (
        SharedLimits(shared.url, namespace=ns, burst_seconds=10) as one,
        SharedLimits(shared.url, namespace=ns + "-2", burst_seconds=10) as two,
    ):
        keyed = ModelSpec(
            "openai:m", base_url="http://deployment.test", rpm=6, api_key="sk-" + "k" * 20
        )
        assert await one.limiter(keyed).try_acquire_async(0, 0) is not None  # burst of 1
        assert await one.limiter(spec(rpm=6)).try_acquire_async(0, 0) is None  # same deployment
        assert await two.limiter(spec(rpm=6)).try_acquire_async(0, 0) is not None
        other_url = ModelSpec("openai:m", base_url="http://elsewhere.test", rpm=6)
        assert await one.limiter(other_url).try_acquire_async(0, 0) is not None
        raw = aioredis.Redis.from_url(shared.url)
        keys = [k.decode() async for k in raw.scan_iter(match=f"{ns}:*")]
        await raw.aclose()
        assert len(keys) == 3  # two deployments, and the open() check
        assert all("kkkkkk" not in k and "deployment.test" not in k for k in keys)


async def test_an_unlimited_deployment_never_calls_redis() -> None:
    limits = SharedLimits(f"redis://127.0.0.1:{free_port()}/0", namespace="x")  # nothing there
    lim = limits.limiter(spec())
    assert not lim.enabled
    r = await lim.acquire(5, 5)
    assert (r.input_tokens, r.output_tokens, r.settled) == (5, 5, False)
    await limits.aclose()


async def test_the_router_uses_it_unchanged(shared: RedisServer, ns: str) -> None:
    """The router's calls (try_acquire, acquire, reconcile, release, on_rate_limited,
    update_from_headers, snapshot) as they are, on a shared limiter put in its slot."""

    class Provider:
        name = "sim"
        throttle = True

        async def complete(self, model: str, request: Request) -> ProviderResponse:
            await anyio.lowlevel.checkpoint()
            if self.throttle:
                self.throttle = False
                exc = RateLimitedError("slow", status=429, retry_after=0.0)
                exc.headers = {"x-ratelimit-limit-requests": "300"}
                raise exc
            return ProviderResponse(text="ok", finish_reason="end_turn", usage=Usage(3, 5))

        async def aclose(self) -> None:
            return None

    s = spec(rpm=600, output_tpm=6000)
    router = Router(
        [(s, Provider())],  # type: ignore[list-item]
        metrics=Metrics(time.monotonic),
        retry=RetryPolicy(max_attempts=2, base=0.001, cap=0.001),
    )
    async with (
        SharedLimits(shared.url, namespace=ns) as a,
        SharedLimits(shared.url, namespace=ns) as b,
    ):
        router._slots[0].limiter = a.limiter(s)  # type: ignore[assignment]
        request = Request(messages=[{"role": "user", "content": "hi"}], max_tokens=100)
        for _ in range(4):
            await router.complete(request)
        state = router._model_state()[s.name]["rate_limits"]
        assert state["backend"] == "redis"
        await router._slots[0].limiter.flush()  # type: ignore[union-attr]
        other = b.limiter(s)
        await other.wait_time(0, 0)
        snap = other.snapshot()
        # the 429 cut the shared rate and its header lowered the limit; the throttled
        # call's reservation went back; each answer's 5 tokens replaced its 100
        assert (snap["multiplier"], snap["rate_limited"]) == (0.5, 1)
        assert snap["requests"]["limit"] == 300
        assert snap["requests"]["available"] == pytest.approx(150 - 4, abs=0.1)
        assert snap["output_tokens"]["available"] == pytest.approx(3000 - 4 * 5, abs=1)


# -- failing closed -----------------------------------------------------------------


async def test_refuses_to_start_without_redis(caplog: pytest.LogCaptureFixture) -> None:
    url = f"redis://user:{PASSWORD}@127.0.0.1:{free_port()}/0"
    limits = SharedLimits(url, namespace="x")
    with pytest.raises(SharedLimitsUnavailableError, match="cannot be reached") as info:
        await limits.open()
    assert isinstance(info.value, ConfigurationError)
    assert "fallback='local'" in str(info.value) and PASSWORD not in str(info.value)
    lim = limits.limiter(spec(rpm=60))
    with pytest.raises(SharedLimitsUnavailableError):  # no grant without the check either
        await lim.acquire(0, 0)
    assert PASSWORD not in repr(limits)
    await limits.aclose()


async def test_scripting_disabled_refuses_to_start(
    own: Callable[..., RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = own(
        "--rename-command", "EVAL", "", "--rename-command", "EVALSHA", "", password=PASSWORD
    )
    limits = SharedLimits(server.url, namespace="x")
    with pytest.raises(
        SharedLimitsUnavailableError, match="refuses the limits' Lua script"
    ) as info:
        await limits.open()
    assert "EVALSHA" in str(info.value) and PASSWORD not in str(info.value)
    await limits.aclose()

    caplog.set_level(logging.WARNING, logger="agentic_synth.routing")
    local = SharedLimits(server.url, namespace="x", fallback="local", burst_seconds=1)
    await local.open()  # opted in: per-process limits, said loudly
    [warning] = messages(caplog, logging.WARNING)
    assert "SHARED RATE LIMITS OFF" in warning and PASSWORD not in warning
    lim = local.limiter(spec(rpm=3))  # the local limiter: a burst of 3 (one minute's worth)
    assert lim.snapshot()["backend"] == "local"
    grants = [lim.try_acquire(0, 0) for _ in range(4)]
    assert [g is not None for g in grants] == [True, True, True, False]
    await local.aclose()


async def test_redis_killed_mid_job_fails_closed(
    own: Callable[..., RedisServer], ns: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = own(password=PASSWORD)
    limits = SharedLimits(server.url, namespace=ns, outage_grace=0.3, timeout=0.5)
    lim = limits.limiter(spec(rpm=600_000, output_tpm=6_000_000))
    await limits.open()
    killed = False
    after_kill: list[Reservation] = []
    refused = 0

    async def hammer() -> None:
        nonlocal refused
        while True:
            started_after = killed
            try:
                r = await lim.acquire(1, 10)
            except SharedLimitsUnavailableError as exc:
                assert PASSWORD not in str(exc)
                refused += 1
                return
            if started_after:
                after_kill.append(r)
            await anyio.sleep(0.001)

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(hammer)
        await anyio.sleep(0.2)
        server.kill()
        killed = True
    assert after_kill == [] and refused == 8
    with pytest.raises(SharedLimitsUnavailableError, match="did not come back"):
        await lim.try_acquire_async(0, 0)
    assert all(PASSWORD not in m for m in messages(caplog, logging.ERROR))
    server.start()  # the same port, empty: the script is loaded again, grants resume
    assert await lim.try_acquire_async(0, 0) is not None
    await limits.aclose()


async def test_redis_killed_with_the_local_fallback_goes_on_loudly(
    own: Callable[..., RedisServer],
    ns: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_shared_limits, "_PROBE_FIRST", 0.05)
    caplog.set_level(logging.WARNING, logger="agentic_synth.routing")
    server = own()
    limits = SharedLimits(server.url, namespace=ns, fallback="local", timeout=0.5)
    lim = limits.limiter(spec(rpm=6, output_tpm=600))
    shared_one = await lim.acquire(0, 100)
    server.kill()
    local_one = await lim.acquire(0, 10)
    assert type(local_one) is Reservation  # granted by the per-process limiter
    assert lim.snapshot()["backend"] == "local"
    assert any("SHARED RATE LIMITS OFF" in m for m in messages(caplog, logging.WARNING))
    # the local limits hold: 6 requests a minute, one taken
    assert [lim.try_acquire(0, 0) is not None for _ in range(6)] == [True] * 5 + [False]
    lim.reconcile(shared_one, 40)  # owed to Redis: kept, not lost
    assert lim.snapshot()["pending"]

    server.start()
    with anyio.fail_after(10):  # a probe every 0.05 s doubling: Redis' return is seen
        while True:
            back = await lim.try_acquire_async(0, 0)
            if back is not None and type(back) is not Reservation:
                break
            await anyio.sleep(0.05)
    assert lim.snapshot()["backend"] == "redis" and not lim.snapshot()["pending"]
    assert any("shared_rate_limits_restored" in m for m in messages(caplog, logging.WARNING))
    await limits.aclose()


# -- N processes, one limit ---------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import asyncio, json, random, sys, time
    import redis.asyncio as aioredis
    from agentic_synth import ModelSpec
    from agentic_synth.routing._shared_limits import SharedLimits

    url, ns, start, end, seed = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:6])

    async def main():
        limits = SharedLimits(url, namespace=ns, burst_seconds=BURST)
        await limits.open()
        spec = ModelSpec("openai:hammer", base_url="http://h.test", rpm=RPM, input_tpm=TPM)
        lim = limits.limiter(spec)
        raw = aioredis.Redis.from_url(url)
        s, us = await raw.time()
        offset = s + us / 1e6 - time.monotonic()  # only to start and stop, never to count
        await raw.aclose()
        await asyncio.sleep(max(0.0, start - offset - time.monotonic()))
        rng = random.Random(seed)
        grants = []

        async def booker():
            while True:
                cost = rng.randint(1, 100)
                r = await lim.acquire(cost, 0)
                if r.acquired_at > end:
                    return
                grants.append((r.acquired_at, cost))

        async def trier():
            while time.monotonic() + offset < end + 0.05:
                cost = rng.randint(1, 100)
                r = await lim.try_acquire_async(cost, 0)
                if r is not None and r.acquired_at <= end:
                    grants.append((r.acquired_at, cost))
                await asyncio.sleep(0.002)

        await asyncio.gather(*(booker() for _ in range(6)), trier())
        await limits.aclose()
        print(json.dumps(grants))

    asyncio.run(main())
    """
)


def test_n_processes_never_get_more_than_rate_times_time_plus_burst(
    shared: RedisServer, ns: str
) -> None:
    rpm, tpm, burst_seconds = 6_000_000, 600_000, 0.1  # tokens bind: 10,000/s, burst 1,000
    code = (
        _CHILD.replace("BURST", repr(burst_seconds))
        .replace("RPM", repr(rpm))
        .replace("TPM", repr(tpm))
    )
    import redis

    raw = redis.Redis.from_url(shared.url)
    seconds, micros = raw.time()
    raw.close()
    start = seconds + micros / 1e6 + 2.0  # the children import and connect meanwhile
    end = start + 3.0
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, shared.url, ns, str(start), str(end), str(i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    assert all(len(r) > 20 for r in results)  # every process got its share
    grants = [g for r in results for g in r]
    first = min(at for at, _ in grants)
    elapsed = end - first  # on Redis' clock, from the first grant (a full bucket then)
    tokens = sum(cost for _, cost in grants)
    bound = tpm / 60 * elapsed + tpm / 60 * burst_seconds
    assert tokens <= bound + 1e-3
    assert tokens >= 0.95 * bound - 100  # not far below: the limiter is not overly strict
    assert len(grants) <= rpm / 60 * elapsed + rpm / 60 * burst_seconds


# -- through Synth(shared_limits=...) ------------------------------------------------------


async def test_two_engines_share_one_rpm_limit(shared: RedisServer, ns: str) -> None:
    from agentic_synth import Synth

    rate = 100.0  # per second
    model = ModelSpec("sim:sim-1", rpm=rate * 60)
    started = time.monotonic()

    async def engine() -> int:
        limits = SharedLimits(shared.url, namespace=ns, burst_seconds=0.1)  # a burst of 10
        async with Synth([model], max_concurrency=32, shared_limits=limits) as synth:
            results = await synth.generate_batch([f"p{i}" for i in range(100)])
        await limits.aclose()
        return sum(r.ok for r in results)

    async with anyio.create_task_group() as tg:
        done: list[int] = []

        async def run() -> None:
            done.append(await engine())

        tg.start_soon(run)
        tg.start_soon(run)
    elapsed = time.monotonic() - started
    assert done == [100, 100]
    # 200 requests at 100/s after a burst of 10 cannot take less than 1.9 s: one limit,
    # not one per engine (each alone would allow 200 in 1 s)
    assert elapsed >= (200 - 10) / rate * 0.95


async def test_a_url_with_no_redis_behind_it_fails_the_job_at_the_start() -> None:
    from agentic_synth import ConfigurationError, Synth

    url = f"redis://127.0.0.1:{free_port()}/0"
    synth = Synth([ModelSpec("sim:sim-1", rpm=600)], shared_limits=url)
    with pytest.raises(SharedLimitsUnavailableError, match="cannot be reached") as caught:
        async with synth:
            pass
    assert isinstance(caught.value, ConfigurationError)
    # unlimited deployments never need Redis
    async with Synth(["sim:sim-1"], shared_limits=url) as free:
        assert (await free.generate("hi")).ok
    with pytest.raises(ConfigurationError, match="shared_limits must be"):
        Synth(["sim:sim-1"], shared_limits=42)  # type: ignore[arg-type]


async def test_hundreds_in_flight_wait_for_a_connection_not_an_outage(
    shared: RedisServer, ns: str
) -> None:
    from agentic_synth import Synth

    limits = SharedLimits(shared.url, namespace=ns)
    model = ModelSpec("sim:sim-1", rpm=6_000_000, options={"latency": 0.005})
    async with Synth([model], max_concurrency=256, shared_limits=limits) as synth:
        results = await synth.generate_batch([f"p{i}" for i in range(1500)])
    await limits.aclose()
    assert all(r.ok for r in results)
    # redis-py's default pool refuses a 101st concurrent command: read as an outage
    assert limits.outages == 0
