"""SimConfig validation, mapping round trips, and latency models."""

from __future__ import annotations

import math
import statistics
from dataclasses import FrozenInstanceError

import pytest

from agentic_synth._exceptions import ConfigurationError
from agentic_synth.simulator import (
    FAULT_KINDS,
    HOSTILE_FAULTS,
    Latency,
    SimConfig,
    fixed,
    lognormal,
    parse_latency,
    uniform,
)


def test_defaults_are_instant_and_fault_free() -> None:
    config = SimConfig()
    assert config.latency.is_zero
    assert config.tokens_per_s is None
    assert config.fault_rates == {}


def test_is_frozen() -> None:
    with pytest.raises(FrozenInstanceError):
        SimConfig().seed = 3  # type: ignore[misc]


def test_latency_given_as_string_or_number_is_parsed() -> None:
    assert SimConfig(latency="uniform:0.1,0.2").latency == uniform(0.1, 0.2)  # type: ignore[arg-type]
    assert SimConfig(latency=0.3).latency == fixed(0.3)  # type: ignore[arg-type]


def test_fault_rates_listed() -> None:
    config = SimConfig(fault_429=0.1, fault_truncate=0.2)
    assert config.fault_rates == {"429": 0.1, "truncate": 0.2}
    assert all(f"fault_{kind}" in SimConfig.__dataclass_fields__ for kind in FAULT_KINDS)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"fault_500": -0.1}, "fault_500 must be a probability"),
        ({"fault_500": 1.2}, "fault_500 must be a probability"),
        ({"fault_500": 0.7, "fault_429": 0.5}, "add up to 1.2"),
        ({"fault_500": math.nan}, "fault_500"),
        ({"tokens_per_s": 0}, "tokens_per_s must be a positive number or None"),
        ({"output_tokens": 0}, "output_tokens must be an integer >= 1"),
        ({"stream_chunk_tokens": 1.5}, "stream_chunk_tokens"),
        ({"retry_after": -1}, "retry_after must be >= 0"),
        ({"hang": math.inf}, "hang"),
        ({"seed": "x"}, "seed must be an integer"),
        ({"fail_first_n": -1}, "fail_first_n"),
        ({"fail_first_kind": "404"}, "fail_first_kind must be one of 429, 500"),
        ({"fault_quota": 0.6, "fault_huge_body": 0.6}, "add up to 1.2"),
        ({"forbidden": 1.5}, "forbidden must be a share of prompts"),
        ({"unauthorized": 1}, "unauthorized must be True or False"),
        ({"long_retry_after": -1}, "long_retry_after must be >= 0"),
        ({"trickle_interval": 0}, "trickle_interval must be > 0"),
        ({"redirect_status": 200}, "redirect_status must be one of 300, 301"),
        ({"redirect_location": "https://x/\r\nset-cookie: a"}, "redirect_location"),
        ({"redirect_location": ""}, "redirect_location"),
        ({"huge_header_bytes": 0}, "huge_header_bytes must be an integer >= 1"),
        ({"huge_body_bytes": -1}, "huge_body_bytes must be an integer >= 0"),
        ({"latency": "slow"}, "cannot parse latency 'slow'"),
    ],
)
def test_invalid_values_name_the_fix(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigurationError, match=needle):
        SimConfig(**kwargs)  # type: ignore[arg-type]


def test_new_fault_kinds_come_after_the_old_ones() -> None:
    """Kinds are stacked in order: appending keeps every seed's old outcomes."""
    assert FAULT_KINDS[:8] == (
        "429", "500", "529", "timeout", "reset", "malformed", "truncate", "stream_error",
    )  # fmt: skip
    assert set(HOSTILE_FAULTS) <= set(FAULT_KINDS)


def test_chaos_fields_round_trip() -> None:
    config = SimConfig(
        fault_quota=0.1,
        fault_redirect=0.1,
        fault_trickle=0.1,
        forbidden=0.01,
        unauthorized=True,
        long_retry_after=90,
        redirect_status=301,
        redirect_location="https://elsewhere.test/v1",
        huge_header_bytes=1000,
        huge_body_bytes=5,
        trickle_interval=0.5,
    )
    assert SimConfig.from_mapping(config.to_mapping()) == config
    assert config.fault_rates == {"quota": 0.1, "redirect": 0.1, "trickle": 0.1}


def test_from_mapping_and_back() -> None:
    config = SimConfig(
        latency=lognormal(0.1, 0.8), tokens_per_s=50.0, fault_529=0.05, seed=12, hang=3.0
    )
    assert SimConfig.from_mapping(config.to_mapping()) == config
    assert SimConfig.from_mapping(None) == SimConfig()
    assert SimConfig.from_mapping({}) == SimConfig()


def test_from_mapping_with_config_and_overrides() -> None:
    base = SimConfig(seed=1, fault_500=0.2)
    assert SimConfig.from_mapping({"config": base}) is base
    merged = SimConfig.from_mapping({"config": base, "fault_500": 0.0, "latency": "0.5"})
    assert (merged.seed, merged.fault_500, merged.latency) == (1, 0.0, fixed(0.5))


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"latncy": 1}, "unknown sim option.*'latncy'.*valid options are config, "),
        ({"config": {"seed": 1}}, r"options\['config'\] must be a SimConfig"),
        ({"fault_429": 3}, "fault_429"),
    ],
)
def test_from_mapping_errors(options: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigurationError, match=needle):
        SimConfig.from_mapping(options)


def test_from_mapping_rejects_non_mapping() -> None:
    with pytest.raises(ConfigurationError, match="mapping"):
        SimConfig.from_mapping([("seed", 1)])  # type: ignore[arg-type]


# --- latency ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.1", fixed(0.1)),
        ("fixed:0.2", fixed(0.2)),
        ("uniform:0.05,0.2", uniform(0.05, 0.2)),
        ("lognormal:0.1,0.8", lognormal(0.1, 0.8)),
        (" Uniform:1,2 ", uniform(1, 2)),
        (0.25, fixed(0.25)),
        (2, fixed(2.0)),
    ],
)
def test_parse_latency(text: str | float, expected: Latency) -> None:
    assert parse_latency(text) == expected
    assert parse_latency(str(expected)) == expected


@pytest.mark.parametrize(
    "text",
    ["", "uniform:1", "uniform:2,1", "lognormal:0,1", "lognormal:0.5,0.1", "gamma:1,2", "-1", "x:"],
)
def test_bad_latency_strings(text: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_latency(text)


def test_bad_latency_types() -> None:
    with pytest.raises(ConfigurationError):
        parse_latency(True)
    with pytest.raises(ConfigurationError):
        parse_latency([0.1])  # type: ignore[arg-type]


def _grid(n: int) -> list[tuple[float, float]]:
    """Deterministic, well-spread pairs of uniforms (a 2D low-discrepancy grid)."""
    golden = (math.sqrt(5) - 1) / 2
    return [((i + 0.5) / n, (i * golden) % 1.0) for i in range(n)]


def test_fixed_and_uniform_samples() -> None:
    assert fixed(0.3).sample(0.9, 0.1) == 0.3
    samples = [uniform(1.0, 3.0).sample(a, b) for a, b in _grid(1000)]
    assert min(samples) >= 1.0 and max(samples) < 3.0
    assert statistics.mean(samples) == pytest.approx(2.0, abs=0.01)


def test_lognormal_hits_its_percentiles() -> None:
    model = lognormal(0.1, 0.8)
    samples = sorted(model.sample(a, b) for a, b in _grid(20000))
    assert samples[len(samples) // 2] == pytest.approx(0.1, rel=0.05)
    assert samples[int(len(samples) * 0.99)] == pytest.approx(0.8, rel=0.08)
    assert samples[0] > 0


def test_zero_latency_is_flagged() -> None:
    assert fixed(0).is_zero
    assert not fixed(0.01).is_zero
    assert not uniform(0, 0.1).is_zero
