"""The simulator's batch engine: progressive processing, errors, expiry, cancel, determinism."""

from __future__ import annotations

import pytest

from agentic_synth._types import Request
from agentic_synth.simulator import SimConfig, Simulator
from agentic_synth.simulator._batches import BatchEngine, BatchError, EngineItem
from agentic_synth.simulator._wire import WireError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def request(i: int) -> Request:
    return Request(
        messages=[{"role": "user", "content": f"Tell me fact number {i}."}], max_tokens=64
    )


def items(n: int, model: str = "m") -> list[EngineItem]:
    return [EngineItem(f"item-{i}", model, request(i)) for i in range(n)]


def engine(clock: Clock, **options: object) -> BatchEngine:
    return BatchEngine(SimConfig.from_mapping(options), clock=clock, wall=lambda: 5000.0)


def test_items_finish_progressively_over_the_processing_time() -> None:
    clock = Clock()
    eng = engine(clock, batch_processing_time=10.0)
    batch = eng.create(items(10), prefix="b_")
    view = eng.view(batch)
    assert (view.processing, view.processing_count, view.succeeded) == ("in_progress", 10, 0)
    assert view.created_at == 5000.0 and view.expires_at == 5000.0 + 86400.0
    clock.now += 5.0
    view = eng.view(eng.get(batch.id))
    assert (view.processing, view.processing_count, view.succeeded) == ("in_progress", 5, 5)
    clock.now += 5.0
    view = eng.view(batch)
    assert (view.processing, view.ending, view.succeeded, view.processing_count) == (
        "ended",
        "completed",
        10,
        0,
    )
    assert view.ended_at == 5010.0
    assert eng.stats.items_processed == 10


def test_zero_processing_time_ends_on_the_first_look() -> None:
    clock = Clock()
    eng = engine(clock)
    batch = eng.create(items(3), prefix="b_")
    assert eng.view(batch).processing == "ended"
    results = list(eng.results(batch.id))
    assert [r.custom_id for r in results] == ["item-0", "item-1", "item-2"]
    assert all(r.state == "succeeded" and r.outcome is not None for r in results)


def test_answers_match_the_online_simulator() -> None:
    clock = Clock()
    eng = engine(clock, seed=3)
    batch = eng.create(items(4), prefix="b_")
    online = Simulator(SimConfig(seed=3))
    for i, result in enumerate(eng.results(batch.id)):
        expected = online.decide(request(i))
        assert result.outcome is not None
        assert result.outcome.text == expected.text
        assert result.outcome.output_tokens == expected.output_tokens
        assert result.outcome.input_tokens == expected.input_tokens


def test_error_rate_gives_realistic_errors_deterministically() -> None:
    def run(seed: int) -> list[tuple[str, int | None]]:
        eng = engine(Clock(), batch_error_rate=0.5, seed=seed)
        batch = eng.create(items(200), prefix="b_")
        out = []
        for r in eng.results(batch.id):
            assert (r.error is None) == (r.state == "succeeded")
            out.append((r.state, None if r.error is None else r.error.status))
        return out

    first = run(1)
    errored = [status for state, status in first if state == "errored"]
    assert 60 < len(errored) < 140
    assert set(errored) <= {529, 500, 400} and len(set(errored)) >= 2
    assert run(1) == first
    assert run(2) != first


def test_all_items_errored_at_rate_one_and_counts_say_so() -> None:
    eng = engine(Clock(), batch_error_rate=1.0)
    batch = eng.create(items(5), prefix="b_")
    view = eng.view(batch)
    assert (view.succeeded, view.errored) == (0, 5)
    kinds = {r.error.kind for r in eng.results(batch.id) if r.error is not None}
    assert kinds <= {"overloaded", "api_error", "invalid_request"}


def test_invalid_params_end_errored_with_their_error() -> None:
    eng = engine(Clock())
    bad = WireError(400, "invalid_request", "max_tokens: Field required")
    batch = eng.create(
        [EngineItem("ok", "m", request(0)), EngineItem("bad", "m", None, bad)], prefix="b_"
    )
    results = {r.custom_id: r for r in eng.results(batch.id)}
    assert results["ok"].state == "succeeded"
    assert results["bad"].state == "errored" and results["bad"].error is bad


def test_items_not_processed_before_expiry_end_expired() -> None:
    clock = Clock()
    eng = engine(clock, batch_processing_time=100.0, batch_expire_after=50.0)
    batch = eng.create(items(10), prefix="b_")
    clock.now += 49.0
    assert eng.view(batch).processing == "in_progress"
    clock.now += 1.0
    view = eng.view(batch)
    assert (view.processing, view.ending) == ("ended", "expired")
    assert (view.succeeded, view.expired, view.processing_count) == (5, 5, 0)
    assert view.ended_at == view.expires_at
    states = [r.state for r in eng.results(batch.id)]
    assert states == ["succeeded"] * 5 + ["expired"] * 5


def test_cancel_keeps_finished_results_and_cancels_the_rest() -> None:
    clock = Clock()
    eng = engine(clock, batch_processing_time=10.0, batch_cancel_time=2.0)
    batch = eng.create(items(10), prefix="b_")
    clock.now += 3.0
    answer = eng.cancel(batch.id)
    assert (answer.processing, answer.processing_count, answer.succeeded) == ("canceling", 7, 3)
    assert eng.stats.batches_canceled == 1
    clock.now += 1.0
    view = eng.view(batch)
    assert view.processing == "canceling"
    assert view.cancel_initiated_at == 5003.0
    assert (view.succeeded, view.processing_count) == (3, 7)
    with pytest.raises(BatchError) as info:
        list(eng.results(batch.id))
    assert info.value.status == 400
    clock.now += 1.0
    view = eng.view(batch)
    assert (view.processing, view.ending, view.succeeded, view.canceled) == (
        "ended",
        "canceled",
        3,
        7,
    )
    assert view.ended_at == 5005.0
    states = [r.state for r in eng.results(batch.id)]
    assert states == ["succeeded"] * 3 + ["canceled"] * 7


def test_cancel_of_an_ended_batch_changes_nothing() -> None:
    eng = engine(Clock())
    batch = eng.create(items(2), prefix="b_")
    eng.cancel(batch.id)
    view = eng.view(batch)
    assert (view.ending, view.succeeded, view.cancel_initiated_at) == ("completed", 2, None)
    assert eng.stats.batches_canceled == 0


def test_ids_are_deterministic_under_the_seed_and_creations_counted() -> None:
    a, b, c = engine(Clock(), seed=1), engine(Clock(), seed=1), engine(Clock(), seed=2)
    ids_a = [a.create(items(1), prefix="msgbatch_").id for _ in range(3)]
    ids_b = [b.create(items(1), prefix="msgbatch_").id for _ in range(3)]
    assert ids_a == ids_b and len(set(ids_a)) == 3
    assert all(i.startswith("msgbatch_") for i in ids_a)
    assert c.create(items(1), prefix="msgbatch_").id not in ids_a
    assert (a.stats.batches_created, a.stats.items_submitted) == (3, 3)


@pytest.mark.parametrize(
    ("batch", "words"),
    [
        ([], "at least 1"),
        (items(3), "at most 2"),
        ([EngineItem("a b", "m", request(0))], "pattern"),
        ([EngineItem("x" * 65, "m", request(0))], "pattern"),
        ([EngineItem("same", "m", request(0)), EngineItem("same", "m", request(1))], "Duplicate"),
    ],
)
def test_invalid_batches_are_refused(batch: list[EngineItem], words: str) -> None:
    eng = engine(Clock())
    with pytest.raises(BatchError) as info:
        eng.create(batch, prefix="b_", max_requests=2)
    assert info.value.status == 400 and words in info.value.message
    assert eng.stats.batches_created == 0


def test_unknown_ids_and_deletion() -> None:
    clock = Clock()
    eng = engine(clock, batch_processing_time=1.0)
    with pytest.raises(BatchError) as info:
        eng.get("b_nope")
    assert info.value.status == 404
    batch = eng.create(items(2), prefix="b_")
    with pytest.raises(BatchError) as info:
        eng.delete(batch.id)
    assert info.value.status == 400
    clock.now += 1.0
    eng.delete(batch.id)
    with pytest.raises(BatchError) as info:
        eng.get(batch.id)
    assert info.value.status == 404
    assert eng.stats.batches_deleted == 1


def test_memory_keeps_at_most_max_batches_dropping_old_ended_ones() -> None:
    clock = Clock()
    eng = BatchEngine(SimConfig(batch_processing_time=10.0), clock=clock, max_batches=2)
    first = eng.create(items(1), prefix="b_")
    clock.now += 10.0  # first has ended
    second = eng.create(items(1), prefix="b_")
    third = eng.create(items(1), prefix="b_")
    assert [b.id for b in eng.batches()] == [third.id, second.id]
    fourth = eng.create(items(1), prefix="b_")  # nothing ended to drop: running ones stay
    assert {b.id for b in eng.batches()} == {second.id, third.id, fourth.id}
    with pytest.raises(BatchError):
        eng.get(first.id)


def test_requests_are_dropped_once_processed() -> None:
    clock = Clock()
    eng = engine(clock, batch_processing_time=2.0)
    batch = eng.create(items(2), prefix="b_")
    clock.now += 1.0
    eng.view(batch)
    assert [item.request is None for item in batch.items] == [True, False]


@pytest.mark.parametrize(
    "options",
    [
        {"batch_processing_time": -1},
        {"batch_error_rate": 1.5},
        {"batch_expire_after": 0},
        {"batch_cancel_time": float("nan")},
    ],
)
def test_config_checks_batch_options(options: dict[str, object]) -> None:
    from agentic_synth._exceptions import ConfigurationError

    with pytest.raises(ConfigurationError):
        SimConfig.from_mapping(options)
