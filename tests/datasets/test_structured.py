"""generate_structured through the engine on the simulator: validity (checked by an
independent validator), corrections, failures, attributes, per-call arrays, dedup,
determinism, streaming."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import pytest
from pydantic import BaseModel, Field

from agentic_synth import ConfigurationError, InvalidRequestError, ModelSpec, Synth, SynthError
from agentic_synth.datasets import builtin_schema

CHECKER = jsonschema.Draft202012Validator.FORMAT_CHECKER


def independent_errors(schema: dict[str, Any], record: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema, format_checker=CHECKER)
    return [e.message for e in validator.iter_errors(record)]


def sim(**options: Any) -> ModelSpec:
    return ModelSpec("sim", "s", options=options)


@pytest.mark.parametrize("name", ["users", "products", "transactions"])
async def test_every_record_is_valid_by_an_independent_validator(name: str) -> None:
    schema = builtin_schema(name)
    async with Synth([sim()], max_concurrency=16) as synth:
        data = await synth.generate_structured(schema, count=200, seed=3)
    assert data.stats.requested == 200 and data.stats.valid == len(data) == 200
    assert data.stats.failed == 0 and not data.failures
    assert all(not independent_errors(schema, r) for r in data.records)


async def test_a_bad_schema_is_refused_before_any_request() -> None:
    async with Synth([sim()]) as synth:
        with pytest.raises(InvalidRequestError, match="type"):
            await synth.generate_structured({"type": "objekt"}, count=5)
        assert synth.metrics().requests == 0


async def test_attributes_fill_the_instructions_and_become_columns() -> None:
    schema = builtin_schema("products")
    async with Synth([sim()]) as synth:
        data = await synth.generate_structured(
            schema,
            count=400,
            instructions="A {category_hint} product for a {buyer}.",
            attributes={
                "category_hint": ["kitchen", "outdoor"],
                "buyer": {"student": 0.8, "chef": 0.2},
            },
            seed=11,
        )
    buyers = Counter(row["buyer"] for row in data.rows)
    assert set(buyers) == {"student", "chef"}
    assert 0.72 < buyers["student"] / 400 < 0.88  # weighted 0.8, 400 draws: +-4 sd
    assert data.columns[-2:] == ["category_hint", "buyer"]
    with pytest.raises(InvalidRequestError, match="missing_one"):
        async with Synth([sim()]) as synth:
            await synth.generate_structured(schema, count=1, instructions="{missing_one}")


async def test_per_call_arrays_fill_their_slots_record_by_record() -> None:
    schema = builtin_schema("users")
    async with Synth([sim()]) as synth:
        data = await synth.generate_structured(schema, count=103, per_call=10, seed=5)
        calls = synth.metrics().requests
    assert data.stats.valid == 103
    assert calls == 11  # ten groups of 10 and one of 3
    assert all(not independent_errors(schema, r) for r in data.records)


class Review(BaseModel):
    product: str = Field(min_length=2)
    stars: int = Field(ge=1, le=5)
    text: str = Field(min_length=10)


async def test_a_pydantic_model_gives_model_instances() -> None:
    async with Synth([sim()]) as synth:
        data = await synth.generate_structured(Review, count=20)
    assert all(isinstance(r, Review) for r in data)
    assert data.rows[0].keys() >= {"product", "stars", "text"}


async def test_stream_yields_every_slot_in_order() -> None:
    async with Synth([sim()], max_concurrency=8) as synth:
        slots = [r.slot async for r in synth.iter_structured(builtin_schema("users"), count=50)]
    assert slots == list(range(50))


async def test_stream_stopped_early_cancels_the_job_and_leaves_synth_usable() -> None:
    """A consumer that breaks out after a few records: the job stops (no request runs
    on), nothing leaks into the Synth's task group, and the Synth goes on working."""
    schema = builtin_schema("users")
    async with Synth([sim()], max_concurrency=4) as synth:
        taken = []
        async with synth.iter_structured(schema, count=5000) as stream:
            async for result in stream:
                taken.append(result.slot)
                if len(taken) == 3:
                    break
        started = synth.metrics().requests
        await anyio.sleep(0.05)
        assert synth.metrics().requests == started < 200  # stopped, not 5000 requests
        # a bare break (no aclose) holds the job on backpressure; the Synth still closes
        async for _ in synth.iter_structured(schema, count=5000):
            break
        after = await synth.generate_structured(schema, count=5)
    assert taken == [0, 1, 2] and len(after) == 5


async def test_stream_stats_match_the_dataset_account() -> None:
    schema = builtin_schema("products")
    options: dict[str, Any] = {"count": 200, "seed": 4, "max_corrections": 3}
    async with Synth([sim(invalid_output=0.3, seed=3)], max_concurrency=8) as synth:
        stream = synth.iter_structured(schema, **options)
        results = [r async for r in stream]
        stats = stream.stats
    kept = [r for r in results if r.record is not None]
    assert stats.valid + stats.corrected == len(kept)
    assert stats.corrected == sum(r.corrected for r in kept) > 0
    assert stats.valid + stats.corrected + stats.failed == 200 == len(results)
    assert stream.columns == list(schema["properties"])


async def test_stream_raises_a_job_stopping_error_and_needs_an_open_synth() -> None:
    async with Synth([sim(unauthorized=True)]) as synth:
        with pytest.raises(ConfigurationError):
            async for _ in synth.iter_structured(builtin_schema("users"), count=20):
                pass
    with pytest.raises(SynthError, match="async with Synth"):
        synth.iter_structured(builtin_schema("users"), count=1)


async def test_same_seed_and_cache_give_a_byte_identical_file(tmp_path: Path) -> None:
    db = tmp_path / "cache.db"
    files = []
    for run in range(2):
        out = tmp_path / f"users{run}.jsonl"
        async with Synth([sim()], cache=str(db), max_concurrency=16) as synth:
            data = await synth.generate_structured(
                builtin_schema("users"),
                count=120,
                attributes={"tier": ["a", "b", "c"]},
                temperature={"uniform": [0.5, 1.0]},
                seed=7,
                sink=out,
            )
            calls = synth.metrics().requests
        assert data.stats.valid == 120
        files.append(out.read_bytes())
        if run == 1:
            assert calls == 0  # every answer replayed from the cache
    assert files[0] == files[1]
    lines = [json.loads(line) for line in files[0].splitlines()]
    assert len(lines) == 120 and {"tier"} <= lines[0].keys()


async def test_output_dedup_keeps_near_duplicates_rare() -> None:
    schema = {
        "type": "object",
        "properties": {"color": {"type": "string", "enum": ["red", "green", "blue"]}},
        "required": ["color"],
        "additionalProperties": False,
    }
    async with Synth([sim()]) as synth:
        data = await synth.generate_structured(
            schema, count=10, dedup_outputs=0.8, max_restarts=3, seed=1
        )
    # only three distinct records exist: the rest cannot be filled without repeats
    assert data.stats.valid == 3
    assert data.stats.failed == 7
    assert data.stats.near_duplicates >= 7
    assert all("near-duplicate" in f.reason for f in data.failures)
    assert data.stats.near_duplicate_rate == 0.0


async def test_thirty_percent_invalid_answers_are_corrected_never_emitted() -> None:
    """Injected invalid outputs at 30%: every emitted record is valid, and the number
    of corrected records matches the injected rate."""
    schema = builtin_schema("products")
    async with Synth([sim(invalid_output=0.3, seed=21)], max_concurrency=16) as synth:
        data = await synth.generate_structured(schema, count=1000, max_corrections=3, seed=2)
    stats = data.stats
    assert stats.valid + stats.corrected == len(data) >= 995
    assert all(not independent_errors(schema, r) for r in data.records)  # never invalid
    # each slot's first answer is invalid with p = 0.3: corrected ~ Binomial(1000, 0.3)
    assert 0.3 - 0.06 < stats.corrected / 1000 < 0.3 + 0.06  # +-4 sd
    # every slot is exactly one of valid (first answer), corrected, failed
    assert stats.valid + stats.corrected + stats.failed == 1000


async def test_a_slot_rescued_by_a_restart_counts_as_corrected() -> None:
    """No correction turns, one restart: a slot whose first answer was invalid and
    whose restart's answer is valid is corrected, not valid at the first answer."""
    schema = builtin_schema("products")
    async with Synth([sim(invalid_output=0.3, seed=21)], max_concurrency=16) as synth:
        data = await synth.generate_structured(
            schema, count=1000, max_corrections=0, max_restarts=1, seed=2
        )
    stats = data.stats
    # first answer invalid (p = 0.3), restart valid (p = 0.7): corrected ~ B(1000, 0.21);
    # both invalid: failed ~ B(1000, 0.09)
    assert 0.21 - 0.06 < stats.corrected / 1000 < 0.21 + 0.06
    assert 0.09 - 0.04 < stats.failed / 1000 < 0.09 + 0.04
    assert stats.restarts == stats.corrected + stats.failed
    assert stats.valid + stats.corrected + stats.failed == 1000


async def test_answers_cut_at_max_tokens_are_never_valid() -> None:
    schema = builtin_schema("users")
    async with Synth([sim(truncated_output=1.0)]) as synth:
        data = await synth.generate_structured(schema, count=10, max_corrections=1, max_restarts=1)
    assert len(data) == 0 and data.stats.failed == 10
    assert all("max_tokens" in f.reason or "cut" in f.reason for f in data.failures)


async def test_a_schema_the_model_never_satisfies_ends_in_failures_not_records() -> None:
    schema = builtin_schema("transactions")
    async with Synth([sim(invalid_output=1.0)]) as synth:
        data = await synth.generate_structured(
            schema, count=20, per_call=5, max_corrections=2, max_restarts=1
        )
    assert len(data) == 0 and len(data.failures) == 20
    assert {f.slot for f in data.failures} == set(range(20))
    assert all(f.attempts == 6 and f.last_output for f in data.failures)  # 2 x (1 + 2)


async def test_quality_targets_on_the_simulator() -> None:
    """README's figures: >= 99.9% of emitted records valid by an independent validator
    and <= 0.5% near-duplicates (Jaccard >= 0.8) with output dedup on, with 10% of the
    answers invalid."""
    schema = builtin_schema("users")
    async with Synth([sim(invalid_output=0.1, seed=8)], max_concurrency=32) as synth:
        data = await synth.generate_structured(
            schema,
            count=2000,
            attributes={"persona": ["student", "retiree", "engineer", "artist"]},
            dedup_outputs=0.8,
            seed=4,
        )
    valid = sum(not independent_errors(schema, r) for r in data.records)
    assert valid / len(data) >= 0.999
    assert data.stats.near_duplicate_rate <= 0.005
    assert len(data) >= 1990
