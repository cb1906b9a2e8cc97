from __future__ import annotations

from agentic_synth import RateLimitedError
from agentic_synth.monitor import Metrics


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_snapshot_counts_and_rates() -> None:
    clock = FakeClock()
    m = Metrics(clock)
    for _ in range(3):
        m.request_started()
    m.attempt_succeeded("sim:a", 0.1, 10, 20, cost=0.5)
    m.request_finished(0.1)
    m.attempt_failed("sim:a", RateLimitedError("slow down", status=429))
    m.request_finished(None, RateLimitedError("slow down", status=429))
    clock.now += 2.0
    s = m.snapshot()
    assert (s.requests, s.succeeded, s.failed, s.in_flight) == (3, 1, 1, 1)
    assert s.errors_by_class == {"RateLimitedError": 1}
    assert (s.input_tokens, s.output_tokens, s.cost_usd) == (10, 20, 0.5)
    assert s.throughput == 1.0
    assert s.models["sim:a"]["attempts"] == 2
    assert s.models["sim:a"]["errors"] == {"RateLimitedError": 1}
    assert s.to_dict()["latency_p50"] is not None


def test_probes_add_model_state() -> None:
    m = Metrics()
    m.model_probes.append(lambda: {"sim:b": {"breaker": "open"}})
    assert m.snapshot().models["sim:b"] == {"breaker": "open"}
