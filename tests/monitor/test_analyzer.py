"""The bottleneck analyzer: each kind against a simulator scenario known to be bound
by it (the analyzer must rank it first), a healthy run (nothing severe), and the
rules table row by row on synthetic snapshots."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from agentic_synth import BreakerConfig, ModelSpec, RetryPolicy, Synth
from agentic_synth.monitor import BottleneckAnalyzer, MetricsSnapshot
from agentic_synth.monitor._rules import KINDS, RULES
from agentic_synth.monitor._signals import signals


def sim(latency: Any = 0.0, **options: Any) -> ModelSpec:
    return ModelSpec("sim", "s", options={"latency": latency, **options})


async def run(
    specs: list[ModelSpec], inputs: Any, concurrency: int, **synth: Any
) -> tuple[Any, MetricsSnapshot]:
    async with Synth(specs, max_concurrency=concurrency, **synth) as engine:
        await engine.generate_batch(inputs, max_tokens=16)
        return engine.analyze(), engine.metrics()


def prompts(n: int) -> list[str]:
    return [f"question {i}" for i in range(n)]


async def test_concurrency_a_low_cap_with_a_slow_provider() -> None:
    report, _ = await run([sim(0.1)], prompts(120), 4)
    top = report.top
    assert top is not None and top.kind == "concurrency" and top.severity == "high"
    assert "max_concurrency to 32" in top.recommendation
    assert any(e.signal == "at_cap" and e.observed >= 0.7 for e in top.evidence)


async def test_rate_limit_client_side_limits_bind() -> None:
    # rpm=6000 lets a minute's worth through at once, then paces at 100/s
    report, _ = await run([ModelSpec("sim", "s", rpm=6000)], prompts(6150), 64)
    assert report.top is not None and report.top.kind == "rate_limit"
    assert "rpm 6,000" in report.top.recommendation
    report, _ = await run([ModelSpec("sim", "s", max_in_flight=2, options={"latency": 0.05})],
                          prompts(60), 64)  # fmt: skip
    assert report.top is not None and report.top.kind == "rate_limit"


async def test_faults_half_the_attempts_overloaded() -> None:
    report, _ = await run(
        [sim(0.01, fault_529=0.5, retry_after=0.02)],
        prompts(200),
        32,
        breaker=BreakerConfig(cooldown=0.1),
        retry=RetryPolicy(base=0.01, cap=0.05),
    )
    top = report.top
    assert top is not None and top.kind == "faults" and top.severity == "high"
    assert "OverloadedError" in top.recommendation and "fallback" in top.recommendation


async def test_provider_latency_a_heavy_tail() -> None:
    report, _ = await run([sim("lognormal:0.02,1.5", seed=3)], prompts(400), 64)
    top = report.top
    assert top is not None and top.kind == "provider_latency"
    assert "timeout=" in top.recommendation


async def test_input_a_slow_async_generator() -> None:
    async def slow() -> AsyncIterator[str]:
        for i in range(100):
            await anyio.sleep(0.01)
            yield f"question {i}"

    report, _ = await run([sim(0.01)], slow(), 16)
    assert report.top is not None and report.top.kind == "input"


async def test_output_a_slow_consumer() -> None:
    async with Synth([sim(0.005)], max_concurrency=8) as engine:
        async for _ in engine.iter_batch(prompts(80)):
            await anyio.sleep(0.02)  # the consumer takes 20 ms per result
        report = engine.analyze()
    assert report.top is not None and report.top.kind == "output"


async def test_client_cpu_a_zero_latency_job() -> None:
    async with Synth([sim()], max_concurrency=64) as engine:
        for _ in range(6):  # ~1.5 s of pure client work, so the CPU probe reads it
            await engine.generate_batch(prompts(20_000), max_tokens=16)
        report = engine.analyze()
    assert report.top is not None and report.top.kind == "client_cpu"
    assert all(b.kind != "concurrency" for b in report.bottlenecks)  # more would not help


async def test_cache_identical_requests_paid_again() -> None:
    report, _ = await run([sim(0.002)], [f"question {i % 10}" for i in range(400)], 64)
    assert report.top is not None and report.top.kind == "cache"
    assert "Cache(mode='shared')" in report.top.recommendation


def resident_bytes() -> int:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def test_memory_the_governor_holds_workers_back() -> None:
    report, _ = await run([sim(0.01)], prompts(300), 32, memory_limit=int(resident_bytes() * 1.02))
    kinds = [b.kind for b in report.bottlenecks]
    assert kinds and kinds[0] == "memory", report.render()


async def test_a_healthy_run_has_nothing_severe() -> None:
    report, snapshot = await run([sim(0.02)], prompts(1500), 128)
    assert not report.severe, report.render()
    assert snapshot.failed == 0


# -- the table, row by row, on synthetic snapshots -------------------------------------


def snapshot(**changes: Any) -> MetricsSnapshot:
    base = MetricsSnapshot(
        elapsed=100.0, requests=1000, succeeded=1000, failed=0, cancelled=0, in_flight=0,
        errors_by_class={}, attempts=1000, retries=0, fallbacks=0, breaker_rejections=0,
        input_tokens=0, output_tokens=0, cost_usd=0.0, latency_p50=1.0, latency_p95=1.5,
        latency_p99=2.0, latency_mean=1.0, ttft_p50=None, ttft_p95=None, ttft_p99=None,
        throughput=10.0, dedup_prompts_skipped=0, dedup_prompts_resent=0,
        dedup_outputs_flagged=0, dedup_outputs_dropped=0, concurrency_cap=64,
        in_flight_mean=10.0, waits={"provider": 1000.0}, cpu_fraction=0.1,
    )  # fmt: skip
    return dataclasses.replace(base, **changes)


def test_signals_divide_by_the_right_time() -> None:
    s = signals(snapshot(waits={"provider": 500.0, "rate_limit": 250.0, "input": 640.0}))
    assert s["provider_share"] == pytest.approx(0.5)  # of 10 in flight x 100 s
    assert s["rate_limit_share"] == pytest.approx(0.25)
    assert s["input_share"] == pytest.approx(0.1)  # of 64 workers x 100 s


@pytest.mark.parametrize("rule", RULES, ids=lambda r: f"{r.kind}-{r.signal}-{r.role}")
def test_each_rule_holds_on_its_side_of_the_threshold(rule: Any) -> None:
    t = rule.threshold
    inside = t + 1e-6 if rule.op == ">=" else t - 1e-6
    outside = t - 1e-6 if rule.op == ">=" else t + 1e-6
    assert rule.holds(inside) and not rule.holds(outside)
    assert rule.holds(None) == (rule.role == "guard")


def test_every_kind_has_a_trigger_and_advice() -> None:
    for kind in KINDS:
        assert any(r.kind == kind and r.role == "trigger" for r in RULES), kind


def test_a_guard_vetoes_its_kind() -> None:
    pinned = snapshot(at_cap=0.95)
    assert BottleneckAnalyzer().analyze(pinned).top.kind == "concurrency"  # type: ignore[union-attr]
    busy = dataclasses.replace(pinned, cpu_fraction=0.95)  # more concurrency would not help
    kinds = [b.kind for b in BottleneckAnalyzer().analyze(busy).bottlenecks]
    assert "concurrency" not in kinds and kinds[0] == "client_cpu"


def test_a_slowdown_with_flat_throughput_is_provider_latency() -> None:
    slow = snapshot(
        latency_mean=1.0,
        windows={
            "10s": {"latency_mean": 2.5, "throughput": 10.0},
            "60s": {"latency_mean": 1.8, "throughput": 10.0},
        },
    )
    top = BottleneckAnalyzer().analyze(slow).top
    assert (
        top is not None and top.kind == "provider_latency" and "slowed down" in top.recommendation
    )
    rising = dataclasses.replace(
        slow, windows={**slow.windows, "10s": {"latency_mean": 2.5, "throughput": 20.0}}
    )
    assert all(
        b.kind != "provider_latency" for b in BottleneckAnalyzer().analyze(rising).bottlenecks
    )


def test_report_renders_and_serialises() -> None:
    report = BottleneckAnalyzer().analyze(snapshot(at_cap=0.9, retries=300, attempts=1300))
    assert [b.kind for b in report.bottlenecks] == ["concurrency", "faults"]  # by impact
    text = report.render()
    assert text.startswith("1. concurrency (medium") and "\n2. faults (medium" in text
    assert "attempts that were retries: 0.231 (>= 0.1, whole run)" in text
    assert report.to_dict()["bottlenecks"][1]["kind"] == "faults"
    assert BottleneckAnalyzer().analyze(snapshot()).render() == "no bottleneck detected"


async def test_a_datasets_intended_samples_are_not_repeats() -> None:
    """A structured job asks the same request for different samples on purpose: no
    advice to share one answer between them (that would make every record the same)."""
    from agentic_synth.datasets import builtin_schema

    async with Synth([sim(0.001)], max_concurrency=16) as engine:
        await engine.generate_structured(builtin_schema("users"), count=300)
        report = engine.analyze()
    assert engine.metrics().repeat_rate is None
    assert all(b.kind != "cache" for b in report.bottlenecks)


async def test_instant_answers_still_let_the_loop_run() -> None:
    """Workers whose inputs never suspend (an instant model) yield now and then, so the
    loop probe keeps running: lag stays far below the job's length."""
    async with Synth([sim()], max_concurrency=64) as engine:
        await engine.generate_batch(prompts(60_000), max_tokens=16)
        s = engine.metrics()
    assert s.loop_lag_max is not None and s.loop_lag_max < 0.25 * s.elapsed
