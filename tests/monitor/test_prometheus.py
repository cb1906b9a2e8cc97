"""The Prometheus export: a running Synth scraped over loopback by an independent
client, its text parsed by prometheus_client's own parser."""

from __future__ import annotations

import math
import socket
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agentic_synth import Cache, ModelSpec, RateLimitedError, RetryPolicy, Synth
from agentic_synth.monitor import (
    Metrics,
    MetricsServer,
    prometheus_collector,
    serve_metrics,
)
from agentic_synth.monitor._metrics import STAGES
from agentic_synth.monitor._prometheus import (
    LATENCY_BUCKETS,
    TOKEN_TIME_BUCKETS,
    SynthCollector,
    _copy,
)

KEY = "sk-test-" + "Q7" * 20
MARKER = "PROMPT-MARKER-7f3a"


def sim(name: str = "s", **options: object) -> ModelSpec:
    return ModelSpec("sim", name, options=options)


def dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(fams: Mapping[str, Any], name: str, **labels: str) -> float:
    """The one sample ``name`` (a counter's ``_total``, a histogram's ``_count``...)
    with ``labels``."""
    family = name if name in fams else name.rpartition("_")[0]
    found = [
        s.value
        for s in fams[family].samples
        if s.name in (name, name + "_total")
        and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, (name, labels, fams[name].samples)
    return float(found[0])


def buckets(fams: Mapping[str, Any], name: str, **labels: str) -> list[tuple[float, float]]:
    return [
        (float(s.labels["le"]), s.value)
        for s in fams[name].samples
        if s.name == name + "_bucket" and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def scrape(url: str) -> str:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


async def test_a_running_synth_is_scraped_over_loopback() -> None:
    # the first model is an OpenAI deployment with a key at a port nobody listens on:
    # every request falls back to the simulator, some of whose prompts are refused
    models = [
        ModelSpec(
            "openai", "gpt-4o-mini", base_url=f"http://127.0.0.1:{dead_port()}/v1", api_key=KEY
        ),
        sim(latency=0.001, forbidden=0.2),
    ]
    synth = Synth(models, max_concurrency=8, retry=RetryPolicy(max_attempts=2, base=0.001))
    prompts = [f"{MARKER} question {i}" for i in range(60)]
    with serve_metrics(synth, 0) as server:
        assert server.url == f"http://127.0.0.1:{server.port}/metrics"
        async with synth:
            results = await synth.generate_batch(prompts, max_tokens=16)
            text = await anyio.to_thread.run_sync(scrape, server.url)
            snap = synth.metrics()
    succeeded = sum(r.ok for r in results)
    assert 0 < succeeded < len(prompts)
    fams = families(text)
    assert value(fams, "synth_requests", outcome="succeeded") == succeeded == snap.succeeded
    assert value(fams, "synth_requests", outcome="failed") == len(prompts) - succeeded
    assert value(fams, "synth_requests", outcome="cancelled") == 0
    assert value(fams, "synth_errors", error_class="PermissionDeniedError") == snap.failed
    assert value(fams, "synth_attempts") == snap.attempts
    assert value(fams, "synth_tokens", type="output") == snap.output_tokens
    assert value(fams, "synth_in_flight") == 0
    assert value(fams, "synth_concurrency_cap") == 8
    openai, simulated = "openai:gpt-4o-mini", "sim:s"
    assert value(fams, "synth_model_attempts", model=simulated) == len(prompts)
    assert value(fams, "synth_model_errors", model=openai, error_class="UnreachableError") > 0
    assert value(fams, "synth_model_tokens", model=simulated, type="input") == snap.input_tokens

    # the latency histogram: cumulative buckets at the documented bounds, +Inf = _count
    # = the requests that succeeded, and the exact sum
    assert fams["synth_request_duration_seconds"].type == "histogram"
    latency = buckets(fams, "synth_request_duration_seconds")
    assert [b for b, _ in latency] == [*LATENCY_BUCKETS, math.inf]
    counts = [n for _, n in latency]
    assert counts == sorted(counts) and counts[-1] == succeeded
    assert value(fams, "synth_request_duration_seconds_count") == succeeded
    assert value(fams, "synth_request_duration_seconds_sum") == pytest.approx(
        synth._metrics.latency.total
    )
    per_model = buckets(fams, "synth_model_attempt_duration_seconds", model=simulated)
    assert per_model[-1][1] == succeeded
    assert {s.labels["stage"] for s in fams["synth_stage_seconds"].samples} == set(STAGES)
    assert value(fams, "synth_stage_seconds", stage="provider") > 0

    # no key and no prompt text; label values are only names of models, errors and
    # the fixed sets
    assert KEY not in text and KEY[:12] not in text and MARKER not in text
    allowed = {
        "model": {openai, simulated},
        "error_class": {"PermissionDeniedError", "UnreachableError"},
        "outcome": {"succeeded", "failed", "cancelled"},
        "type": {"input", "output"},
        "stage": set(STAGES),
        "action": {"prompt_skipped", "prompt_resent", "output_flagged", "output_dropped"},
    }
    for fam in fams.values():
        assert fam.name.startswith("synth_")
        for sample in fam.samples:
            for label, label_value in sample.labels.items():
                if label == "le":
                    float(label_value)
                else:
                    assert label_value in allowed[label], (fam.name, label, label_value)


async def test_streams_fill_the_token_time_histograms() -> None:
    synth = Synth([sim(latency=0.001, tokens_per_s=2000.0)])
    with serve_metrics(synth, 0) as server:
        async with synth:
            for i in range(5):
                async with synth.generate_stream(f"story {i}", max_tokens=12) as stream:
                    async for _ in stream:
                        pass
            text = await anyio.to_thread.run_sync(scrape, server.url)
    fams = families(text)
    m = synth._metrics
    assert m.ttft.count == 5 and m.itl.count > 0 and m.tpot.count > 0
    for name, hist in (
        ("synth_time_to_first_token_seconds", m.ttft),
        ("synth_inter_token_latency_seconds", m.itl),
        ("synth_time_per_output_token_seconds", m.tpot),
    ):
        got = buckets(fams, name)
        assert [b for b, _ in got] == [*TOKEN_TIME_BUCKETS, math.inf]
        assert got[-1][1] == hist.count == value(fams, name + "_count")


def test_bucket_counts_follow_the_one_percent_rule() -> None:
    m = Metrics()
    for latency in (1e-7, 0.0099, 0.0101, 0.02, 0.99, 1.5, 590.0, 700.0):
        m.request_started()
        m.request_finished(latency)
    fams = families(generate_latest(_registry(SynthCollector(m))).decode())
    cumulative = dict(buckets(fams, "synth_request_duration_seconds"))
    assert cumulative[0.01] == 2  # 1e-7 and 0.0099 (<= 0.01 / 1.01)
    assert cumulative[0.025] == 4  # + 0.0101 and 0.02
    assert cumulative[1] == 5
    assert cumulative[2.5] == 6
    assert cumulative[600] == 7
    assert cumulative[math.inf] == 8


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=1e-7, max_value=1e4), min_size=1, max_size=200))
def test_a_bucket_never_counts_above_its_bound_nor_misses_more_than_one_percent(
    values: list[float],
) -> None:
    m = Metrics()
    for v in values:
        m.request_started()
        m.request_finished(v)
    fams = families(generate_latest(_registry(SynthCollector(m))).decode())
    for bound, count in buckets(fams, "synth_request_duration_seconds"):
        assert sum(v <= bound / 1.01 for v in values) <= count <= sum(v <= bound for v in values)


def _registry(collector: SynthCollector) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(collector)
    return registry


async def test_slo_cache_and_memory_families_appear_when_configured() -> None:
    plain = families(generate_latest(_registry(SynthCollector(Metrics()))).decode())
    for name in ("synth_goodput_requests", "synth_cache_hits", "synth_memory_pressure"):
        assert name not in plain
    cache = Cache(("memory",), mode="shared")  # identical requests share one answer
    synth = Synth([sim(latency=0.001)], slo={"latency": 5.0}, cache=cache, memory_limit="64GB")
    async with synth:
        await synth.generate_batch(["a", "b"], max_tokens=8)
        await synth.generate_batch(["a"], max_tokens=8)
        registry = CollectorRegistry()
        registry.register(prometheus_collector(synth))
        fams = families(generate_latest(registry).decode())
    snap = synth.metrics()
    assert value(fams, "synth_goodput_requests") == snap.succeeded
    assert value(fams, "synth_slo_seconds", objective="latency") == 5.0
    assert snap.cache is not None
    assert value(fams, "synth_cache_hits") == snap.cache["hits"] > 0
    assert value(fams, "synth_cache_misses") == snap.cache["misses"]
    assert "synth_memory_pressure" in fams and "synth_memory_limit_bytes" in fams


async def test_the_budget_and_unpriced_calls_are_exported() -> None:
    plain = families(generate_latest(_registry(SynthCollector(Metrics()))).decode())
    assert "synth_budget_usd" not in plain
    synth = Synth([sim(latency=0.001)], budget=1.0)
    async with synth:
        await synth.generate_batch(["a", "b", "c"], max_tokens=8)
        registry = CollectorRegistry()
        registry.register(prometheus_collector(synth))
        fams = families(generate_latest(registry).decode())
        snap = synth.metrics()
    assert snap.budget is not None
    assert value(fams, "synth_budget_usd", kind="limit") == 1.0
    assert value(fams, "synth_budget_usd", kind="spent") == pytest.approx(snap.cost_usd)
    assert value(fams, "synth_budget_usd", kind="reserved") == 0.0
    assert value(fams, "synth_budget_exhausted") == 0.0
    assert value(fams, "synth_unpriced_calls") == 0


async def test_two_servers_have_their_own_registries() -> None:
    one, two = Synth([sim("a")]), Synth([sim("b")])
    with serve_metrics(one, 0) as first, serve_metrics(two, 0) as second:
        async with one:
            await one.generate_batch(["x", "y", "z"], max_tokens=8)
        a = families(await anyio.to_thread.run_sync(scrape, first.url))
        b = families(await anyio.to_thread.run_sync(scrape, second.url))
    assert value(a, "synth_requests", outcome="succeeded") == 3
    assert value(b, "synth_requests", outcome="succeeded") == 0
    assert "synth_requests" not in {f.name for f in REGISTRY.collect()}  # never the global one


def test_a_busy_port_raises_and_close_frees_the_port() -> None:
    synth = Synth([sim()])
    server = serve_metrics(synth, 0)
    port = server.port
    with pytest.raises(OSError):
        serve_metrics(synth, port)
    server.close()
    server.close()  # twice is fine
    with pytest.raises(httpx.TransportError):
        httpx.get(server.url, timeout=2)
    with serve_metrics(synth, port) as again:  # the port is free again
        assert again.port == port


async def test_async_with_closes_off_the_loop() -> None:
    synth = Synth([sim()])
    async with serve_metrics(synth, 0) as server:
        assert isinstance(server, MetricsServer)
        text = await anyio.to_thread.run_sync(scrape, server.url)
    assert "synth_requests_total" in text
    with pytest.raises(httpx.TransportError):
        await anyio.to_thread.run_sync(scrape, server.url)


def test_scrapes_from_another_thread_while_the_metrics_grow() -> None:
    m = Metrics()
    collector = SynthCollector(m)
    stop = threading.Event()
    problems: list[BaseException] = []

    def scraper() -> None:
        while not stop.is_set():
            try:
                list(collector.collect())
            except BaseException as exc:  # pragma: no cover - the failure being tested
                problems.append(exc)
                return

    thread = threading.Thread(target=scraper)
    thread.start()
    try:
        for i in range(20_000):  # new buckets, new error classes, new models
            m.request_started()
            m.request_finished(1e-6 * 1.01**i)
            m.attempt_failed(f"sim:m{i % 300}", type(f"Error{i % 50}", (Exception,), {})())
    finally:
        stop.set()
        thread.join()
    assert problems == []


def test_a_copy_that_races_a_resize_is_retried() -> None:
    class Resizing(Mapping[str, int]):
        def __init__(self) -> None:
            self.calls = 0

        def __getitem__(self, key: str) -> int:
            return 1

        def __len__(self) -> int:
            return 1

        def __iter__(self) -> Iterator[str]:
            self.calls += 1
            if self.calls < 3:
                raise RuntimeError("dictionary changed size during iteration")
            return iter(["a"])

        def keys(self) -> Any:
            return list(iter(self))

    assert _copy(Resizing()) == {"a": 1}


def test_failed_requests_stay_out_of_the_latency_histogram() -> None:
    m = Metrics()
    m.request_started()
    m.request_finished(0.5, RateLimitedError("slow down", status=429))  # its time to failing
    m.request_started()
    m.request_finished(0.25)
    fams = families(generate_latest(_registry(SynthCollector(m))).decode())
    assert value(fams, "synth_request_duration_seconds_count") == 1
    assert value(fams, "synth_request_duration_seconds_sum") == 0.25
    assert value(fams, "synth_errors", error_class="RateLimitedError") == 1
