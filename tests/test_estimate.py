"""Estimates before a job: token counts, worst case and expected cost, nothing sent."""

from __future__ import annotations

import pytest

from agentic_synth import InvalidRequestError, ModelSpec, Synth
from agentic_synth._estimate import estimate_text

pytestmark = pytest.mark.anyio

PROMPTS = [f"Write a realistic review of product {i}, with pros and cons." for i in range(500)]


async def test_the_estimate_brackets_the_real_cost_on_the_simulator() -> None:
    spec = ModelSpec("sim:sim-1", options={"output_tokens": 80, "seed": 7})
    synth = Synth([spec], max_tokens=256)
    estimate = synth.estimate(PROMPTS, expected_output_tokens=80)  # works while closed
    async with synth:
        results = await synth.generate_batch(PROMPTS)
        sent = synth.metrics().requests
    real = sum(r.cost or 0.0 for r in results if r.ok)  # type: ignore[union-attr]
    real_in = sum(r.usage.input_tokens for r in results if r.ok)  # type: ignore[union-attr]
    assert sent == len(PROMPTS) and estimate.requests == len(PROMPTS)
    assert estimate.tokenizer == "simulator"
    assert estimate.input_tokens == real_in  # the simulator's own count: exact
    assert estimate.max_output_tokens == 256 * len(PROMPTS)
    assert estimate.worst_case_usd is not None and real <= estimate.worst_case_usd
    # the stated tolerance: within 15% of the real cost at the true mean length
    assert estimate.expected_usd == pytest.approx(real, rel=0.15)


def test_batch_mode_is_priced_at_the_batch_discount() -> None:
    synth = Synth([ModelSpec("anthropic:claude-haiku-4-5", api_key="sk-test")], max_tokens=100)
    online = synth.estimate(PROMPTS, expected_output_tokens=50)
    batch = synth.estimate(PROMPTS, expected_output_tokens=50, mode="batch")
    assert batch.batch and not online.batch
    assert online.worst_case_usd is not None and batch.worst_case_usd is not None
    assert batch.worst_case_usd == pytest.approx(online.worst_case_usd / 2)
    assert batch.expected_usd == pytest.approx(online.expected_usd / 2)  # type: ignore[operator]
    assert online.tokenizer == "cl100k_base" and any("Claude" in n for n in online.notes)


def test_unpriced_models_and_unsendable_inputs_are_reported_not_zero() -> None:
    synth = Synth([ModelSpec("openai:llama", base_url="http://127.0.0.1:9/v1")])
    estimate = synth.estimate(["fine", {"prompt": ""}, {"prompt": "ok", "max_tokens": 10}])
    assert estimate.requests == 2 and estimate.unsendable == 1
    assert estimate.worst_case_usd is None and estimate.expected_usd is None
    text = "\n".join(estimate_text(estimate, budget=5.0))
    assert "cost: at most unknown" in text and "no known price" in text
    assert "1 inputs cannot be sent" in text


def test_bad_arguments_are_refused_by_name() -> None:
    synth = Synth(["sim:sim-1"])
    with pytest.raises(InvalidRequestError, match="expected_output_tokens"):
        synth.estimate(["x"], expected_output_tokens=-1)
    with pytest.raises(InvalidRequestError, match="mode"):
        synth.estimate(["x"], mode="offline")
