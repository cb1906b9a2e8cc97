"""The OpenTelemetry export, read back through the SDK's InMemoryMetricReader: names,
units and attributes of the GenAI semantic conventions, counts matching the requests."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from agentic_synth import ConfigurationError, ModelSpec, Synth, SynthError
from agentic_synth.monitor import instrument_otel
from agentic_synth.monitor._otel import DURATION_BUCKETS, TOKEN_BUCKETS

MARKER = "PROMPT-MARKER-91c2"
BASE = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "agentic_synth.sim",
    "gen_ai.request.model": "s",
}
REFUSED = {**BASE, "error.type": "PermissionDeniedError"}


@dataclass
class Otel:
    reader: InMemoryMetricReader
    provider: MeterProvider

    def metrics(self) -> dict[str, Any]:
        data = self.reader.get_metrics_data()
        if data is None:
            return {}
        return {
            metric.name: metric
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            if scope.scope.name == "agentic_synth"
            for metric in scope.metrics
        }


@pytest.fixture
def otel() -> Iterator[Otel]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    yield Otel(reader, provider)
    provider.shutdown()


def sim(name: str = "s", **options: object) -> ModelSpec:
    return ModelSpec("sim", name, options=options)


def points(metric: Any) -> dict[frozenset[tuple[str, Any]], Any]:
    return {frozenset(p.attributes.items()): p for p in metric.data.data_points}


def key(attributes: dict[str, Any]) -> frozenset[tuple[str, Any]]:
    return frozenset(attributes.items())


async def run_job(synth: Synth, streams: int = 0) -> tuple[int, int]:
    """A batch with refusals, then ``streams`` streamed requests: (succeeded, failed)."""
    async with synth:
        results = await synth.generate_batch([f"{MARKER} {i}" for i in range(40)], max_tokens=12)
        for i in range(streams):
            async with synth.generate_stream(f"story {i}", max_tokens=12) as stream:
                async for _ in stream:
                    pass
    ok = sum(r.ok for r in results) + streams
    return ok, 40 + streams - ok


def faulty_sim() -> Synth:
    return Synth([sim(latency=0.001, forbidden=0.1, tokens_per_s=5000.0)])


async def test_v1_41_names_units_attributes_and_counts(otel: Otel) -> None:
    synth = faulty_sim()
    instrument_otel(synth, otel.provider, latest=False)
    ok, failed = await run_job(synth, streams=3)
    assert ok > 3 and failed > 0
    snap = synth.metrics()
    got = otel.metrics()
    assert set(got) == {
        "gen_ai.client.operation.duration",
        "gen_ai.client.token.usage",
        "gen_ai.client.operation.time_to_first_chunk",
    }

    duration = got["gen_ai.client.operation.duration"]
    assert duration.unit == "s"
    assert set(points(duration)) == {key(BASE), key(REFUSED)}  # error.type on failures
    assert points(duration)[key(BASE)].count == ok
    assert points(duration)[key(REFUSED)].count == failed
    assert tuple(points(duration)[key(BASE)].explicit_bounds) == DURATION_BUCKETS

    usage = got["gen_ai.client.token.usage"]  # successes: the provider reported usage
    assert usage.unit == "{token}"
    assert set(points(usage)) == {
        key({**BASE, "gen_ai.token.type": "input"}),
        key({**BASE, "gen_ai.token.type": "output"}),
    }
    into = points(usage)[key({**BASE, "gen_ai.token.type": "input"})]
    out = points(usage)[key({**BASE, "gen_ai.token.type": "output"})]
    assert (into.count, into.sum) == (ok, snap.input_tokens)
    assert (out.count, out.sum) == (ok, snap.output_tokens)
    assert tuple(out.explicit_bounds) == TOKEN_BUCKETS

    ttfc = got["gen_ai.client.operation.time_to_first_chunk"]  # streams only
    assert ttfc.unit == "s"
    assert [p.count for p in points(ttfc).values()] == [3]
    assert set(points(ttfc)) == {key(BASE)}

    values = [v for m in got.values() for k in points(m) for _, v in k]
    assert not any(MARKER in str(v) for v in values)  # never a prompt


async def test_latest_conventions_on_opt_in(otel: Otel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "http, gen_ai_latest_experimental")
    synth = faulty_sim()
    instrument_otel(synth, otel.provider)
    ok, failed = await run_job(synth, streams=2)
    snap = synth.metrics()
    got = otel.metrics()
    assert set(got) == {
        "gen_ai.client.inference.duration",
        "gen_ai.client.inference.time_to_first_chunk",
        "gen_ai.client.inference.usage.input_tokens",
        "gen_ai.client.inference.usage.output_tokens",
        "gen_ai.client.inference.operation.input_tokens",
        "gen_ai.client.inference.operation.output_tokens",
    }
    duration = points(got["gen_ai.client.inference.duration"])
    assert (duration[key(BASE)].count, duration[key(REFUSED)].count) == (ok, failed)

    # counters, every operation: a failure adds 0 tokens of unknown modality
    for name, total in (("input_tokens", snap.input_tokens), ("output_tokens", snap.output_tokens)):
        counter = got[f"gen_ai.client.inference.usage.{name}"]
        assert counter.unit == "{token}" and counter.data.is_monotonic
        assert {k: p.value for k, p in points(counter).items()} == {
            key({**BASE, "gen_ai.token.modality": "text"}): total,
            key({**BASE, "gen_ai.token.modality": "unknown"}): 0,
        }
        per_operation = points(got[f"gen_ai.client.inference.operation.{name}"])
        assert per_operation[key(BASE)].count == ok
        assert per_operation[key(BASE)].sum == total
        assert per_operation[key(REFUSED)].count == failed


async def test_the_stop_function_and_a_second_instrumentation(otel: Otel) -> None:
    synth = Synth([sim()])
    stop = instrument_otel(synth, otel.provider)
    with pytest.raises(SynthError, match="already records"):
        instrument_otel(synth, otel.provider)
    stop()
    stop()  # twice is fine
    async with synth:
        await synth.generate_batch(["a", "b"], max_tokens=8)
    assert otel.metrics() == {}
    assert synth._metrics.listeners == []


def test_without_the_extra_the_error_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # import fails as if absent
    with pytest.raises(ConfigurationError, match=r"pip install 'agentic-synth\[otel\]'"):
        instrument_otel(Synth([sim()]))


async def test_provider_and_model_attributes_from_the_model_name(otel: Otel) -> None:
    # the provider prefix becomes gen_ai.provider.name, the rest gen_ai.request.model
    from agentic_synth.monitor._otel import _Recorder

    models = {"openai:llama": ("openai", "llama"), "llama": ("openai", "llama")}
    recorder = _Recorder(otel.provider.get_meter("agentic_synth"), False, models, "anthropic")
    recorder(0.5, None, None, 7, "anthropic:claude-haiku-4-5", 3)
    recorder(0.1, TimeoutError(), None, 0, None, 0)  # failed before any model was tried
    recorder(0.2, None, None, 5, "openai:llama", 2)
    recorder(0.2, None, None, 5, "llama", 2)  # a provider's error may name the bare model
    duration = points(otel.metrics()["gen_ai.client.operation.duration"])
    assert set(duration) == {
        key(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "anthropic",
                "gen_ai.request.model": "claude-haiku-4-5",
            }
        ),
        key(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "anthropic",
                "error.type": "TimeoutError",
            }
        ),
        key(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "llama",
            }
        ),
    }
