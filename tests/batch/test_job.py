"""Batch mode end to end on the in-process simulator's batch API: the same records as
online mode, splitting, resume, the cache, retries, a refused batch, cancellation, cost."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest

from agentic_synth import (
    BadRequestError,
    Completion,
    ConfigurationError,
    Failure,
    InvalidRequestError,
    ModelSpec,
    Synth,
)
from agentic_synth.batch import (
    BatchItemCanceledError,
    BatchItemExpiredError,
    BatchJobBusyError,
    BatchRefusedError,
    batch_jobs,
    cancel_job,
)
from agentic_synth.providers._batch import (
    BatchItem,
    BatchItemResult,
    BatchLimits,
    BatchStatus,
)
from agentic_synth.providers._sim_batch import SimBatchBackend

PROMPTS = [f"Write a question about item {i}." for i in range(12)]


def sim(**options: Any) -> ModelSpec:
    return ModelSpec("sim:sim-1", options=options, input_price=1e-6, output_price=3e-6)


def backend_of(synth: Synth) -> SimBatchBackend:
    provider = synth._deployments[0][1]
    backend = provider.batch_backend()  # type: ignore[attr-defined]
    assert isinstance(backend, SimBatchBackend)
    return backend


def created(synth: Synth) -> int:
    return backend_of(synth).engine.stats.batches_created


FAST = {"batch_poll_interval": 0.005}


async def test_batch_records_equal_online_records_in_order(tmp_path: Path) -> None:
    state = tmp_path / "s.sqlite"
    async with Synth([sim(batch_processing_time=0.02)]) as synth:
        batch = await synth.generate_batch(
            PROMPTS, max_tokens=16, mode="batch", batch_state=state, **FAST
        )
        assert created(synth) == 1
        m = synth.metrics()
    async with Synth([sim()]) as synth:
        online = await synth.generate_batch(PROMPTS, max_tokens=16)
    assert len(batch) == len(PROMPTS)
    for i, (b, o) in enumerate(zip(batch, online, strict=True)):
        assert isinstance(b, Completion) and isinstance(o, Completion)
        assert (b.index, b.text, b.finish_reason, b.raw_finish_reason, b.usage) == (
            i, o.text, o.finish_reason, o.raw_finish_reason, o.usage,
        )  # fmt: skip
        assert b.model == "sim:sim-1" and b.batch_id is not None and o.batch_id is None
        assert b.attempts == 1 and not b.cached
        # the batch discount: exactly half the online price for the same usage
        assert b.cost is not None and o.cost is not None
        assert b.cost == pytest.approx(o.cost / 2, rel=1e-12)
    # the metrics count every collected result, its tokens and its cost
    assert m.succeeded == len(PROMPTS) and m.failed == 0
    assert m.output_tokens == sum(r.usage.output_tokens for r in batch if isinstance(r, Completion))
    assert m.cost_usd == pytest.approx(sum(r.cost or 0 for r in batch if isinstance(r, Completion)))


async def test_large_jobs_are_split_by_count_and_bytes(tmp_path: Path) -> None:
    state = tmp_path / "s.sqlite"
    async with Synth([sim()]) as synth:
        backend = backend_of(synth)
        backend.limits = BatchLimits(max_requests=5, max_bytes=10**9)
        results = await synth.generate_batch(
            PROMPTS, max_tokens=8, mode="batch", batch_state=state, **FAST
        )
        assert created(synth) == 3  # 5 + 5 + 2
        one = backend.encoded_size(BatchItem("i0", "sim-1", dataclasses.replace(
            _request(PROMPTS[0]), max_tokens=8)))  # fmt: skip
        backend.limits = BatchLimits(max_requests=1000, max_bytes=one * 4 + 4)
        again = await synth.generate_batch(
            [p + "!" for p in PROMPTS], max_tokens=8, mode="batch", batch_state=state, **FAST
        )
    assert all(r.ok for r in results + again)
    ((_, batches), (_, first)) = batch_jobs(state)  # newest first
    assert [b.items for b in first] == [5, 5, 2]
    # at most 4 items' bytes per batch (the longer prompts fit fewer)
    assert sum(b.items for b in batches) == 12 and len(batches) >= 3
    assert all(1 <= b.items <= 4 for b in batches)


def _request(prompt: str) -> Any:
    from agentic_synth._request import GenerationParams, build_request

    return build_request(prompt, GenerationParams())


async def test_a_rerun_replays_the_state_and_pays_nothing(tmp_path: Path) -> None:
    state = tmp_path / "s.sqlite"
    async with Synth([sim()]) as synth:
        first = await synth.generate_batch(
            PROMPTS, max_tokens=8, mode="batch", batch_state=state, **FAST
        )
        second = await synth.generate_batch(
            PROMPTS, max_tokens=8, mode="batch", batch_state=state, **FAST
        )
        assert created(synth) == 1
    assert [r.text for r in second] == [r.text for r in first]  # type: ignore[union-attr]
    assert all(isinstance(r, Completion) and r.cached and r.cost == 0.0 for r in second)
    ((job, _),) = batch_jobs(state)
    assert job.status == "done" and job.outcomes == {"succeeded": len(PROMPTS)}


async def test_the_persistent_cache_is_shared_with_online_mode(tmp_path: Path) -> None:
    cache = str(tmp_path / "cache.sqlite")
    async with Synth([sim()], cache=cache) as synth:
        batch = await synth.generate_batch(
            PROMPTS, max_tokens=8, mode="batch", batch_state=tmp_path / "a.sqlite", **FAST
        )
    # a fresh process: a batch rerun with another state file finds everything in the cache
    async with Synth([sim()], cache=cache) as synth:
        again = await synth.generate_batch(
            PROMPTS, max_tokens=8, mode="batch", batch_state=tmp_path / "b.sqlite", **FAST
        )
        assert created(synth) == 0 and synth.metrics().requests == 0
    # and online mode replays the batch's answers under the same keys: no call either
    async with Synth([sim()], cache=cache) as synth:
        online = await synth.generate_batch(PROMPTS, max_tokens=8)
        assert synth.metrics().requests == 0
    texts = [r.text for r in batch]  # type: ignore[union-attr]
    assert [r.text for r in again] == texts == [r.text for r in online]  # type: ignore[union-attr]
    assert all(r.cached for r in online)  # type: ignore[union-attr]


async def test_errored_items_are_retried_in_new_rounds(tmp_path: Path) -> None:
    prompts = [f"p{i}" for i in range(40)]
    async with Synth([sim(batch_error_rate=0.5)]) as synth:
        results = await synth.generate_batch(
            prompts, max_tokens=8, mode="batch", batch_state=tmp_path / "s.sqlite",
            batch_max_rounds=6, **FAST,
        )  # fmt: skip
        rounds = created(synth)
        m = synth.metrics()
    assert [r.index for r in results] == list(range(40))
    assert rounds > 1  # some items went to a second batch
    retried = [r for r in results if isinstance(r, Completion) and r.attempts > 1]
    assert retried
    for r in results:
        if isinstance(r, Failure):  # only what retrying cannot fix, or out of rounds
            assert isinstance(r.error, BadRequestError) or r.attempts == 6
    assert m.retries > 0
    assert m.succeeded + m.failed == 40


async def test_expired_items_fail_after_the_rounds_or_go_online(tmp_path: Path) -> None:
    slow = sim(batch_processing_time=10.0, batch_expire_after=0.02)
    async with Synth([slow]) as synth:
        failed = await synth.generate_batch(
            PROMPTS[:4], max_tokens=8, mode="batch", batch_state=tmp_path / "a.sqlite",
            batch_max_rounds=2, **FAST,
        )  # fmt: skip
        assert created(synth) == 2
    for r in failed:
        assert isinstance(r, Failure) and isinstance(r.error, BatchItemExpiredError)
        assert r.attempts == 2 and "expired" in r.message
    async with Synth([slow]) as synth:
        online = await synth.generate_batch(
            PROMPTS[:4], max_tokens=8, mode="batch", batch_state=tmp_path / "b.sqlite",
            batch_retry="online", **FAST,
        )  # fmt: skip
        assert created(synth) == 1 and synth.metrics().requests == 4
    assert all(isinstance(r, Completion) and r.batch_id is None and r.attempts == 2 for r in online)


class RefusingBackend:
    """A batch API that accepts a batch, then reports it failed as a whole."""

    provider = "sim"
    limits = BatchLimits(100, 10**9)

    def __init__(self) -> None:
        self.submitted = 0

    def encoded_size(self, item: BatchItem) -> int:
        return 100

    async def submit(
        self, items: Sequence[BatchItem], *, metadata: Mapping[str, str] | None = None
    ) -> BatchStatus:
        self.submitted += 1
        return BatchStatus(f"b{self.submitted}", "running")

    async def retrieve(self, batch_id: str) -> BatchStatus:
        return BatchStatus(batch_id, "failed", error="the input file is malformed")

    async def results(self, batch_id: str) -> AsyncIterator[BatchItemResult]:
        raise AssertionError("a failed batch has no results")
        yield  # pragma: no cover

    async def cancel(self, batch_id: str) -> BatchStatus:
        raise AssertionError("not canceled")


async def test_a_refused_batch_fails_its_items_without_resubmitting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refusing = RefusingBackend()
    async with Synth([sim()]) as synth:
        monkeypatch.setattr(synth._deployments[0][1], "batch_backend", lambda: refusing)
        results = await synth.generate_batch(
            PROMPTS[:3], mode="batch", batch_state=tmp_path / "s.sqlite", **FAST
        )
    assert refusing.submitted == 1
    for r in results:
        assert isinstance(r, Failure) and isinstance(r.error, BatchRefusedError)
        assert "refused batch b1 as a whole: the input file is malformed" in r.message


async def test_cancel_keeps_what_finished(tmp_path: Path) -> None:
    state = tmp_path / "s.sqlite"
    async with Synth([sim(batch_processing_time=3.0)]) as synth:
        engine = backend_of(synth).engine
        out: list[Any] = []

        async def job() -> None:
            out.extend(
                await synth.generate_batch(
                    PROMPTS, max_tokens=8, mode="batch", batch_state=state, **FAST
                )
            )

        async with anyio.create_task_group() as tg:
            tg.start_soon(job)
            with anyio.fail_after(10):
                while not engine.batches() or engine.view(engine.batches()[0]).succeeded < 2:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            ((row, _),) = batch_jobs(state)
            await cancel_job(row.job_id, batch_state=state, synth=synth)
        assert created(synth) == 1 and engine.stats.batches_canceled == 1
    kept = [r for r in out if isinstance(r, Completion)]
    canceled = [r for r in out if isinstance(r, Failure)]
    assert len(out) == len(PROMPTS) and len(kept) >= 2 and canceled
    assert all(isinstance(r.error, BatchItemCanceledError) for r in canceled)
    assert "you canceled the job" in canceled[0].message
    ((row, _),) = batch_jobs(state)
    assert row.status == "canceled"
    assert row.outcomes == {"succeeded": len(kept), "canceled": len(canceled)}


async def test_interrupted_while_polling_then_resumed_reattaches(tmp_path: Path) -> None:
    state = tmp_path / "s.sqlite"
    async with Synth([sim(batch_processing_time=0.3)]) as synth:
        with anyio.move_on_after(0.1):  # Ctrl-C while the batch runs
            await synth.generate_batch(
                PROMPTS, max_tokens=8, mode="batch", batch_state=state, **FAST
            )
        ((row, batches),) = batch_jobs(state)
        assert row.status == "running" and row.lock_pid is None  # released
        assert [b.status for b in batches] == ["running"] and batches[0].batch_id
        results = await synth.generate_batch(
            PROMPTS, max_tokens=8, mode="batch", batch_state=state, **FAST
        )
        assert created(synth) == 1  # re-attached, not submitted again
    assert all(isinstance(r, Completion) and r.batch_id == batches[0].batch_id for r in results)


async def test_a_second_run_of_a_running_job_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "s.sqlite"
    async with Synth([sim(batch_processing_time=0.3)]) as synth:
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                lambda: synth.generate_batch(
                    PROMPTS, max_tokens=8, mode="batch", batch_state=state, **FAST
                )
            )
            with anyio.fail_after(5):
                while not batch_jobs(state) or batch_jobs(state)[0][0].lock_pid is None:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            with pytest.raises(BatchJobBusyError, match="is being run by process"):
                await synth.generate_batch(PROMPTS, max_tokens=8, mode="batch", batch_state=state)


async def test_unreadable_inputs_and_raise_on_error(tmp_path: Path) -> None:
    state = tmp_path / "s.sqlite"
    async with Synth([sim()]) as synth:
        results = await synth.generate_batch(
            ["fine", "", {"prompt": "x", "max_tokens": 0}], mode="batch", batch_state=state, **FAST
        )
        assert [r.ok for r in results] == [True, False, False]
        assert isinstance(results[1], Failure) and isinstance(results[1].error, InvalidRequestError)
        with pytest.raises(InvalidRequestError, match="the prompt is empty"):
            await synth.generate_batch(
                ["fine", ""], mode="batch", batch_state=state, raise_on_error=True, **FAST
            )


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"mode": "bulk"}, InvalidRequestError, "mode must be 'online' or 'batch', got 'bulk'"),
        (
            {"mode": "batch", "dedup_prompts": 0.8},
            InvalidRequestError,
            "works in mode='online' only",
        ),
        (
            {"mode": "batch", "batch_poll_interval": 0},
            ConfigurationError,
            "batch_poll_interval must be a positive",
        ),
        (
            {"mode": "batch", "batch_max_rounds": 0},
            ConfigurationError,
            "batch_max_rounds must be an integer >= 1",
        ),
        (
            {"mode": "batch", "batch_retry": "later"},
            ConfigurationError,
            "batch_retry must be one of batch, online, none",
        ),
        (
            {"mode": "batch", "batch_state": "nodir/s.sqlite"},
            ConfigurationError,
            "batch_state nodir/s.sqlite: directory",
        ),
    ],
)
async def test_bad_options_are_refused_by_name(
    options: dict[str, Any],
    error: type[Exception],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    async with Synth([sim()]) as synth:
        with pytest.raises(error, match=message):
            await synth.generate_batch(["a"], **options)


async def test_a_synth_without_a_batch_api_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    async with Synth([sim()]) as synth:
        monkeypatch.setattr(synth._deployments[0][1], "batch_backend", lambda: None)
        with pytest.raises(
            ConfigurationError, match="mode='batch' needs an anthropic:, openai: or sim: model"
        ):
            await synth.generate_batch(["a"], mode="batch")


def test_the_state_file_never_holds_a_key(tmp_path: Path) -> None:
    # the anthropic provider's key is not needed for a job that is all in the state,
    # but the spec the job records is provider, model and URL only
    state = tmp_path / "s.sqlite"

    async def run() -> None:
        async with Synth([sim()]) as synth:
            await synth.generate_batch(PROMPTS[:2], mode="batch", batch_state=state, **FAST)

    anyio.run(run)
    db = sqlite3.connect(state)
    cols = {
        r[1] for t in ("jobs", "batches", "items") for r in db.execute(f"PRAGMA table_info({t})")
    }
    db.close()
    assert not {c for c in cols if "key" in c.lower()}


async def test_a_budget_reserves_each_batch_and_submits_only_what_fits(tmp_path: Path) -> None:
    from agentic_synth._budget import Budget
    from agentic_synth._exceptions import BudgetExceededError
    from agentic_synth._pricing import prices_for, worst_case_input_tokens

    spec = sim()
    prices = prices_for(spec)
    assert prices is not None
    worst = [
        prices.worst_case(worst_case_input_tokens(_request(p)), 200, batch=True) for p in PROMPTS
    ]
    limit = sum(worst[:7]) + worst[7] / 2  # room for 7 items' worst cases, not 8
    async with Synth([spec], budget=Budget(limit_usd=limit, alerts=())) as synth:
        results = await synth.generate_batch(
            PROMPTS, max_tokens=200, mode="batch", batch_state=tmp_path / "s.sqlite", **FAST
        )
        account = synth._budget
        assert account is not None
        snapshot = account.snapshot()
    done = [r for r in results if isinstance(r, Completion)]
    refused = [r for r in results if isinstance(r, Failure)]
    assert [r.index for r in done] == list(range(7))
    assert all(isinstance(r.error, BudgetExceededError) for r in refused) and len(refused) == 5
    # settled to the batch price of what ran, far below the worst case
    paid = sum(r.cost or 0.0 for r in done)
    assert snapshot["spent_usd"] == pytest.approx(paid) and paid <= limit
    assert snapshot["reserved_usd"] == pytest.approx(0.0, abs=1e-12)
    assert snapshot["exhausted"] is True


async def test_a_ledger_budget_claims_for_a_whole_batch(tmp_path: Path) -> None:
    from agentic_synth._budget import Budget

    budget = Budget(limit_usd=1.0, path=tmp_path / "ledger.sqlite", alerts=())
    async with Synth([sim()], budget=budget) as synth:
        # each batch's worst case is far above the first chunk claimed (1% of the limit)
        results = await synth.generate_batch(
            PROMPTS, max_tokens=2000, mode="batch", batch_state=tmp_path / "s.sqlite", **FAST
        )
        account = synth._budget
        assert account is not None
        snapshot = account.snapshot()
    assert all(isinstance(r, Completion) for r in results)
    assert snapshot["reserved_usd"] == 0.0 and not snapshot["exhausted"]
    assert snapshot["spent_usd"] == pytest.approx(sum(r.cost or 0.0 for r in results))  # type: ignore[union-attr]
