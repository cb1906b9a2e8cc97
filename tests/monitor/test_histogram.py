from __future__ import annotations

import random

import pytest

from agentic_synth.monitor import LogHistogram


def test_empty() -> None:
    h = LogHistogram()
    assert h.percentile(0.5) is None and h.mean is None


def test_percentiles_within_one_percent() -> None:
    rng = random.Random(1)
    values = [rng.lognormvariate(-2.0, 1.0) for _ in range(20_000)]
    h = LogHistogram()
    for v in values:
        h.record(v)
    values.sort()
    for q in (0.5, 0.9, 0.95, 0.99):
        exact = values[int(q * len(values)) - 1]
        got = h.percentile(q)
        assert got is not None
        assert abs(got - exact) / exact < 0.011, (q, got, exact)
    assert h.percentile(1.0) == pytest.approx(max(values))
    assert h.count == len(values)


def test_tiny_and_zero_values_and_merge() -> None:
    a, b = LogHistogram(), LogHistogram()
    a.record(0.0)
    b.record(2.0)
    a.merge(b)
    assert a.count == 2 and a.max == 2.0 and a.min == 0.0
    assert a.percentile(0.5) == pytest.approx(1e-6)
    with pytest.raises(ValueError):
        a.percentile(1.5)
