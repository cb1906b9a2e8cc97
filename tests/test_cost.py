"""Cost of a call from its usage and the deployment's prices."""

from __future__ import annotations

import pytest

from agentic_synth import ConfigurationError, ModelSpec, Usage
from agentic_synth._cost import usage_cost

SPEC = ModelSpec("sim", "a", input_price=3e-6, output_price=15e-6)


def test_plain_usage_is_input_plus_output() -> None:
    assert usage_cost(Usage(1000, 100), SPEC) == pytest.approx(1000 * 3e-6 + 100 * 15e-6)


def test_prompt_cache_writes_and_reads_have_their_own_prices() -> None:
    usage = Usage(
        input_tokens=4000,
        output_tokens=100,
        cache_creation_input_tokens=0,
        cache_read_input_tokens=3000,
    )
    # 1000 uncached + 3000 read at 0.1x + output
    assert usage_cost(usage, SPEC) == pytest.approx(1000 * 3e-6 + 3000 * 0.3e-6 + 100 * 15e-6)
    first = Usage(4000, 100, cache_creation_input_tokens=3000)
    assert usage_cost(first, SPEC) == pytest.approx(1000 * 3e-6 + 3000 * 3.75e-6 + 100 * 15e-6)
    own = ModelSpec("sim", "a", input_price=3e-6, cache_write_price=6e-6, cache_read_price=0.0)
    assert usage_cost(first, own) == pytest.approx(1000 * 3e-6 + 3000 * 6e-6)


def test_negative_or_infinite_prices_are_refused() -> None:
    for bad in ({"input_price": -1.0}, {"cache_read_price": float("inf")}):
        with pytest.raises(ConfigurationError, match="prices"):
            ModelSpec("sim", "a", **bad)  # type: ignore[arg-type]


def test_one_hour_cache_writes_cost_twice_the_input_price() -> None:
    usage = Usage(4000, 0, cache_creation_input_tokens=3000, cache_creation_1h_input_tokens=2000)
    # 1000 uncached, 1000 written for 5 minutes (1.25x), 2000 for an hour (2x)
    assert usage_cost(usage, SPEC) == pytest.approx(1000 * 3e-6 + 1000 * 3.75e-6 + 2000 * 6e-6)
