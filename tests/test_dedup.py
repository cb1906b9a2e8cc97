"""Near-duplicate control wired into batches: prompts skipped, outputs flagged or dropped."""

from __future__ import annotations

import anyio
import pytest

from agentic_synth import (
    Completion,
    Failure,
    InvalidRequestError,
    ModelSpec,
    RetryPolicy,
    Synth,
)
from agentic_synth._core import SimilarityIndex
from agentic_synth._dedup import DuplicateOutputError, DuplicatePromptError

BASE = (
    "Write a detailed product review for a stainless steel water bottle that keeps drinks "
    "cold for twenty four hours and mention the lid the weight and the price"
)


def sim(**options: object) -> ModelSpec:
    return ModelSpec("sim", "s", options=options)


async def test_near_duplicate_prompts_are_not_sent_and_reuse_the_result() -> None:
    inputs = [
        BASE,
        "Explain how a heat pump works to a ten year old child in three short paragraphs",
        "  " + BASE.upper().replace(" ", "   "),  # case and spacing only: normalised away
        BASE + " please",  # one more word: still above 0.8 Jaccard on word 3-grams
        "List five creative names for a bakery that specialises in sourdough bread",
    ]
    async with Synth([sim()]) as synth:
        results = await synth.generate_batch(inputs, dedup_prompts=0.8, max_tokens=16)
        m = synth.metrics()
    assert [r.index for r in results] == [0, 1, 2, 3, 4]
    assert all(isinstance(r, Completion) for r in results)
    r0, r2, r3 = results[0], results[2], results[3]
    assert isinstance(r2, Completion) and isinstance(r3, Completion) and isinstance(r0, Completion)
    assert r2.duplicate_of == 0 and r3.duplicate_of == 0
    assert r2.text == r0.text and r2.usage.total_tokens == 0 and r2.attempts == 0
    assert results[1].duplicate_of is None and results[4].duplicate_of is None  # type: ignore[union-attr]
    assert m.dedup_prompts_skipped == 2
    assert m.requests == 3  # only the distinct prompts were sent


async def test_duplicates_waiting_for_a_failed_original_are_sent_themselves() -> None:
    """One transient failure of the original must not fail its near-duplicates:
    each gets its own try (here the fault is permanent, so each fails on its own)."""
    models = [sim(fault_500=1.0, latency=0.01)]
    async with Synth(models, retry=RetryPolicy(max_attempts=1)) as synth:
        results = await synth.generate_batch([BASE, BASE], dedup_prompts=0.9, max_tokens=8)
        m = synth.metrics()
    assert all(isinstance(r, Failure) for r in results)
    assert [r.index for r in results] == [0, 1]
    assert all(r.attempts == 1 for r in results)  # both were sent
    assert m.requests == 2 and m.dedup_prompts_skipped == 0


async def test_a_duplicate_waits_for_its_original_and_reuses_its_answer() -> None:
    async with Synth([sim(latency=0.01)]) as synth:
        results = await synth.generate_batch([BASE, BASE], dedup_prompts=0.9, max_tokens=8)
        m = synth.metrics()
    first, second = results
    assert isinstance(first, Completion) and isinstance(second, Completion)
    assert second.duplicate_of == 0 and second.text == first.text
    assert m.requests == 1  # the duplicate waited for the original in flight


async def test_a_failed_original_gives_its_claim_back_to_a_shared_index() -> None:
    """Before: the failed original stayed claimed, so a rerun got DuplicatePromptError
    and sent nothing, ever."""
    shared = SimilarityIndex("minhash", 0.9)
    async with Synth([sim(fault_500=1.0)], retry=RetryPolicy(max_attempts=1)) as synth:
        first = await synth.generate_batch([BASE], dedup_prompts=shared, max_tokens=8)
    assert isinstance(first[0], Failure) and len(shared) == 0
    async with Synth([sim()]) as synth:
        again = await synth.generate_batch([BASE], dedup_prompts=shared, max_tokens=8)
    assert isinstance(again[0], Completion) and again[0].duplicate_of is None
    assert len(shared) == 1  # the answered prompt keeps its claim


async def test_a_cancelled_original_gives_its_claim_back() -> None:
    shared = SimilarityIndex("minhash", 0.9)
    async with Synth([sim(latency=5.0)]) as synth:
        with anyio.move_on_after(0.05):
            await synth.generate_batch([BASE], dedup_prompts=shared, max_tokens=8)
    assert len(shared) == 0


async def test_prompt_dedup_keeps_a_bounded_number_of_results() -> None:
    """Distinct prompts, then their duplicates long after: only the last
    16 x max_concurrency originals are kept; older duplicates are sent after all."""
    distinct = [f"{BASE} variant number {i} with its own words {i * 7919}" for i in range(80)]
    async with Synth([sim()], max_concurrency=2) as synth:  # keeps 32 results
        results = await synth.generate_batch(distinct + distinct, dedup_prompts=0.95)
        m = synth.metrics()
    assert all(r.ok for r in results)
    assert m.dedup_prompts_skipped + m.dedup_prompts_resent == 80
    assert m.dedup_prompts_resent >= 80 - 32  # evicted originals: resent, not held
    assert m.requests == 80 + m.dedup_prompts_resent


async def test_output_dedup_flags_or_drops() -> None:
    # Two simulated deployments with one seed answer the same prompt with the same
    # text (each sees it for the first time); round robin sends the repeat to the other.
    models = [ModelSpec("sim", n, options={"seed": 1, "output_tokens": 40}) for n in "ab"]
    inputs = [BASE, BASE]
    async with Synth(models, strategy="round_robin", max_concurrency=1) as synth:
        flagged = await synth.generate_batch(inputs, dedup_outputs=0.9, max_tokens=40)
    async with Synth(models, strategy="round_robin", max_concurrency=1) as synth:
        dropped = await synth.generate_batch(
            inputs, dedup_outputs=0.9, dedup_action="drop", max_tokens=40
        )
        m = synth.metrics()
    first, second = flagged
    assert isinstance(first, Completion) and isinstance(second, Completion)
    assert first.text == second.text and first.model != second.model
    assert (first.near_duplicate_of, second.near_duplicate_of) == (None, 0)
    assert dropped[0].ok and isinstance(dropped[1], Failure)
    assert isinstance(dropped[1].error, DuplicateOutputError) and dropped[1].error.duplicate_of == 0
    assert "near-duplicate" in dropped[1].message and dropped[1].index == 1
    assert (m.dedup_outputs_flagged, m.dedup_outputs_dropped) == (0, 1)


async def test_an_index_can_be_shared_across_batches() -> None:
    shared = SimilarityIndex("minhash", 0.8)
    async with Synth([sim()]) as synth:
        first = await synth.generate_batch([BASE], dedup_prompts=shared, max_tokens=8)
        second = await synth.generate_batch([BASE], dedup_prompts=shared, max_tokens=8)
    assert first[0].ok
    # seen in the first batch: not sent again, and said so in its own record
    assert isinstance(second[0], Failure)
    assert isinstance(second[0].error, DuplicatePromptError) and second[0].error.position == 0
    assert "earlier batch" in second[0].message
    assert synth.metrics().requests == 1


async def test_synth_level_defaults_and_bad_settings() -> None:
    async with Synth([sim()], dedup_prompts=0.8) as synth:
        results = await synth.generate_batch([BASE, BASE], max_tokens=8)
        assert results[1].duplicate_of == 0  # type: ignore[union-attr]
        off = await synth.generate_batch([BASE, BASE], dedup_prompts=None, max_tokens=8)
        assert off[1].duplicate_of is None  # type: ignore[union-attr]
    with pytest.raises(InvalidRequestError, match="threshold"):
        Synth([sim()], dedup_prompts=1.5)
    with pytest.raises(InvalidRequestError, match="dedup_action"):
        Synth([sim()], dedup_action="delete")  # type: ignore[arg-type]


async def test_a_user_deduplicator_of_any_method_plugs_in() -> None:
    from agentic_synth.similarity import Deduplicator

    for method in ("minhash", "simhash", "exact"):
        dedup = Deduplicator(threshold=0.8, method=method)
        async with Synth([sim()]) as synth:
            results = await synth.generate_batch(
                [BASE, "Name three rivers in Europe", BASE], dedup_prompts=dedup, max_tokens=8
            )
        assert [r.duplicate_of for r in results] == [None, None, 0], method  # type: ignore[union-attr]
        assert len(dedup) == 2
