"""Running one batch job: submit, persist, poll, collect, retry, until every input is answered.

The loop, each turn: submit what is pending (cut into batches that fit the
backend's limits), poll every batch still at the provider (the interval starts
small and backs off to ``poll_interval``), and collect each batch that ended,
streaming its results. An item that errored (retryably), expired, or whose batch
the provider canceled goes back to pending for a new round, or to the online
path (``retry="online"``), up to ``max_rounds`` attempts; what still fails ends
as a :class:`~agentic_synth.Failure` with its error and attempts.

Cancelling the caller (Ctrl-C) leaves the batches running at the provider and
the state as it is: a rerun re-attaches. :meth:`BatchJob.cancel` is the other
way to stop: ask the provider to cancel, keep what finished.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import anyio

from .._budget import BudgetAccount, Hold
from .._exceptions import (
    APIConnectionError,
    BadRequestError,
    BudgetExceededError,
    NotFoundError,
    ProviderError,
    SynthError,
)
from .._log import get_logger
from .._pricing import prices_for, worst_case_input_tokens, worst_case_output_tokens
from .._spec import ModelSpec
from .._types import _FINISH_ALIASES, Completion, Failure, Request, Result, Usage
from .._types import normalize_finish_reason as _normalize
from ..caching._base import CachedResult
from ..caching._cache import ResponseCache
from ..monitor import Metrics
from ..providers._batch import BatchBackend, BatchItem, BatchItemResult, BatchStatus
from ._errors import (
    BatchItemCanceledError,
    BatchItemExpiredError,
    BatchRefusedError,
    error_from_record,
)
from ._plan import custom_id, index_of, split
from ._state import BatchRow, ItemUpdate, StateStore

__all__ = ["BatchJob", "BatchOptions", "BatchProgress", "Retry"]

log = get_logger("agentic_synth.batch")

T = TypeVar("T")

Retry = Literal["batch", "online", "none"]
RETRY_CHOICES: tuple[Retry, ...] = ("batch", "online", "none")

#: The first poll comes this soon (or at ``poll_interval`` if that is shorter); each
#: poll that finds nothing new waits ``_BACKOFF`` times longer, up to ``poll_interval``.
_FIRST_POLL = 1.0
_BACKOFF = 1.5
#: Results written to the state file per transaction while a batch is collected.
_WRITE_CHUNK = 500
#: Seconds a submit call may take once started; a Ctrl-C waits for it (shielded)
#: so an accepted batch's id is never lost to the interrupt itself.
_SUBMIT_SHIELD = 120.0


@dataclass(frozen=True, slots=True)
class BatchOptions:
    """How a batch job polls and retries."""

    #: Longest wait between polls, in seconds (the first poll comes sooner).
    poll_interval: float = 30.0
    #: Attempts per input, each in a new batch (or online with ``retry="online"``).
    max_rounds: int = 3
    #: Where errored and expired items go: a new batch round, the online path, or
    #: nowhere (they fail at once).
    retry: Retry = "batch"


@dataclass(slots=True)
class BatchProgress:
    """The job's counts, as of the last poll."""

    job_id: str
    total: int
    #: Inputs answered before any batch of this run: replayed from the state or cache.
    replayed: int = 0
    #: Items in batches at the provider, by the provider's last counts.
    submitted: int = 0
    processing: int = 0
    succeeded: int = 0
    errored: int = 0
    #: Inputs with a final failure.
    failed: int = 0
    batches_running: int = 0
    batches_submitted: int = 0
    rounds: int = 0
    #: USD of the results collected in this run (batch prices).
    cost: float = 0.0
    unpriced: int = 0

    @property
    def done(self) -> int:
        return self.replayed + self.succeeded + self.failed


@dataclass(slots=True)
class _Running:
    """A batch at the provider, as this run tracks it."""

    row: BatchRow
    status: BatchStatus | None = None
    items: set[int] = field(default_factory=set)


Mode = Literal["run", "collect", "cancel"]


class BatchJob:
    """One job over one backend. ``mode``: ``run`` submits and retries until every
    input is answered; ``collect`` only reads what the job's batches have finished;
    ``cancel`` cancels them at the provider, then collects what finished."""

    def __init__(
        self,
        *,
        store: StateStore,
        job_id: str,
        total: int,
        backend: BatchBackend | None,
        spec: ModelSpec,
        price: Callable[[Usage], float | None],
        metrics: Metrics | None,
        options: BatchOptions = BatchOptions(),
        mode: Mode = "run",
        requests: Sequence[Request | None] = (),
        keys: Sequence[bytes | None] = (),
        cache: ResponseCache | None = None,
        cache_read: bool = True,
        cache_store: bool = False,
        cache_ttl: float | None = None,
        online: Callable[[Request, int], Awaitable[Result]] | None = None,
        concurrency: int = 64,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        progress: Callable[[BatchProgress], None] | None = None,
        wait: float | None = None,
        budget: BudgetAccount | None = None,
    ) -> None:
        self.store = store
        #: The Synth's budget: a batch reserves its worst case (at batch prices) when
        #: submitted and settles to what its results cost when collected.
        self._budget = budget
        self._holds: dict[int, Hold] = {}
        batch_prices = prices_for(spec) if budget is not None else None
        self._batch_prices = batch_prices
        #: ``cancel`` mode: seconds to wait for canceled batches to end (None: until they do).
        self.wait = wait
        self.job_id = job_id
        self._backend = backend
        self.spec = spec
        self.options = options
        self.mode = mode
        self._price = price
        self._metrics = metrics
        self._requests = requests
        self._keys = keys
        self._cache = cache
        self._cache_read = cache_read and cache is not None
        self._cache_store = cache_store and cache is not None
        self._cache_ttl = cache_ttl
        self._online = online
        self._limit = anyio.Semaphore(max(1, concurrency))
        self._clock = clock
        self._sleep = sleep
        self._on_progress = progress
        self.results: list[Result | None] = [None] * total
        self._attempts: dict[int, int] = {}
        self._pending: set[int] = set()
        self._running: dict[int, _Running] = {}
        self._canceled = mode == "cancel"
        self._tg: anyio.abc.TaskGroup | None = None
        self.progress = BatchProgress(job_id, total)
        self._submit_failed = False
        self._loaded = False

    # -- plumbing ----------------------------------------------------------------

    @property
    def canceled(self) -> bool:
        """Whether the job was canceled (by this run, or from elsewhere meanwhile)."""
        return self._canceled

    @property
    def backend(self) -> BatchBackend:
        """The provider's batch API (a job with nothing at the provider may have none)."""
        if self._backend is None:
            raise SynthError(f"internal error: batch job {self.job_id} has no backend")
        return self._backend

    async def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A state-file call in a worker thread; once started it finishes (a Ctrl-C
        never leaves half a transaction)."""
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))

    def _report(self) -> None:
        p = self.progress
        p.batches_running = len(self._running)
        p.submitted = p.processing = 0
        for run in self._running.values():
            p.submitted += run.row.items
            if run.status is not None:
                p.processing += run.status.counts.processing
            else:
                p.processing += run.row.processing
        if self._on_progress is not None:
            self._on_progress(p)

    # -- the job -------------------------------------------------------------------

    async def run(self) -> list[Result | None]:
        """Until every input has a result (``run``), or until what finished is read."""
        await self.load_running()
        deadline = None if self.wait is None else self._clock() + self.wait
        async with anyio.create_task_group() as tg:
            self._tg = tg
            interval = start = min(self.options.poll_interval, _FIRST_POLL)
            while True:
                if self._pending and self.mode == "run":
                    if await self._job_canceled():
                        break
                    await self._submit_pending()
                    interval = start
                self._report()
                if not self._running:
                    if not self._pending or self.mode != "run":
                        break
                    if self._submit_failed:  # nothing at the provider: wait, then try again
                        await self._sleep(interval)
                        interval = min(self.options.poll_interval, interval * _BACKOFF)
                    continue
                changed = await self._poll()
                if self.mode == "collect" or (deadline is not None and self._clock() >= deadline):
                    break  # what finished is read; the rest stays at the provider
                if changed:
                    interval = start
                    continue
                await self._sleep(interval)
                interval = min(self.options.poll_interval, interval * _BACKOFF)
        self._tg = None
        if self.mode == "cancel":
            await self._cancel_rest()
        self._report()
        return self.results

    async def load_running(self) -> None:
        """The state as the last run left it: results replayed, batches re-attached,
        intents without an id given up, the rest pending (once)."""
        if self._loaded:
            return
        self._loaded = True
        rows = await self._db(self.store.items, self.job_id)
        have_requests = bool(self._requests)
        answered: list[tuple[int, Completion]] = []
        for row in rows:
            i = row.idx
            self._attempts[i] = row.attempts
            if self.results[i] is not None:  # an input that could not become a request
                continue
            if row.outcome == "succeeded" and row.result is not None:
                done = CachedResult.from_bytes(row.result).completion(index=i, latency=0.0)
                self.results[i] = done
                answered.append((i, done))
            elif row.outcome in ("failed", "canceled") and not have_requests:
                self.results[i] = Failure(
                    error_from_record(row.error_type, row.error, row.status, row.error_model),
                    index=i,
                    model=row.error_model,
                    attempts=row.attempts,
                )
            elif row.outcome in ("pending", "failed", "canceled"):
                self._pending.add(i)
        self.progress.replayed = len(answered)
        if self._cache is not None and self._cache_store:
            await self._sync_cache(answered)
        for batch in await self._db(self.store.batches, self.job_id):
            if batch.status == "intent":
                lost = await self._db(self.store.drop_intent, self.job_id, batch.seq, lost=True)
                log.warning(
                    "batch_intent_lost",
                    job=self.job_id,
                    items=len(lost),
                    note="the last run stopped between submitting a batch and recording its "
                    "id; its items are submitted again (the provider may have both)",
                )
                self._pending.update(i for i in lost if self.results[i] is None)
            elif batch.status in ("running", "canceling", "ended", "failed"):
                items = set(await self._db(self.store.batch_items, self.job_id, batch.seq))
                self._running[batch.seq] = _Running(batch, None, items)
                if self._budget is not None and have_requests:
                    # submitted by an earlier run: its spending is coming, fit or not
                    worst = sum(
                        self._worst(BatchItem(custom_id(i), self.spec.model, request))
                        for i in items
                        if (request := self._requests[i]) is not None
                    )
                    self._holds[batch.seq] = self._budget.force_reserve(worst)
                self.progress.batches_submitted += 1
        if self._cache_read and have_requests:
            await self._replay_cache()

    async def _sync_cache(self, answered: list[tuple[int, Completion]]) -> None:
        """Results the state holds but the cache may not (a crash between the two
        writes): the cache gets them, so online reruns find them too."""
        cache = self._cache
        assert cache is not None
        for i, completion in answered:
            key = self._keys[i] if i < len(self._keys) else None
            if key is not None and await cache.lookup(key) is None:
                await cache.store(key, completion, self._cache_ttl)

    async def _replay_cache(self) -> None:
        """Pending inputs the response cache already answers are not submitted."""
        cache = self._cache
        assert cache is not None
        hits: list[ItemUpdate] = []
        for i in sorted(self._pending):
            key = self._keys[i] if i < len(self._keys) else None
            if key is None:
                continue
            found = await cache.lookup(key)
            if found is None:
                cache.misses += 1
                continue
            cache.hits += 1
            done = found.completion(index=i, latency=0.0)
            self.results[i] = done
            self._pending.discard(i)
            hits.append(ItemUpdate(i, "succeeded", found.to_bytes(), 0.0, 0.0))
        self.progress.replayed += len(hits)
        await self._db(self.store.record, self.job_id, hits)

    # -- submitting ----------------------------------------------------------------

    async def _submit_pending(self) -> None:
        pending = sorted(self._pending)
        self._pending.clear()
        self._submit_failed = False
        model = self.spec.model
        items = []
        for i in pending:
            request = self._requests[i]
            assert request is not None
            items.append(BatchItem(custom_id(i), model, request))
        chunks = split(items, self.backend.limits, self.backend.encoded_size)
        for item, size in chunks.oversized:
            i = _index(item)
            error = BadRequestError(
                f"input {i} is {size:,} bytes encoded, more than one batch may hold "
                f"({self.backend.limits.max_bytes:,}); shorten it or send it with mode='online'",
                model=self.spec.name,
            )
            await self._finish_failed([(i, error)])
        for chunk in chunks.batches:
            await self.submit_chunk(chunk, self.backend)

    def _worst(self, item: BatchItem) -> float:
        prices = self._batch_prices
        assert prices is not None
        request = item.request
        return prices.worst_case(
            worst_case_input_tokens(request), worst_case_output_tokens(request), batch=True
        )

    async def _reserve(self, items: Sequence[BatchItem]) -> tuple[Sequence[BatchItem], Hold]:
        """Reserve the chunk's worst case; the items that do not fit end with the
        budget's error (the budget is then exhausted: nothing more is submitted)."""
        budget = self._budget
        assert budget is not None
        costs = [self._worst(item) for item in items]
        total = sum(costs)
        hold = budget.try_reserve(total)
        if hold is not None:
            return items, hold
        room = await budget.room(total)  # claims from a shared ledger first
        fit, spent = 0, 0.0
        for cost in costs:
            if spent + cost > room:
                break
            spent += cost
            fit += 1
        hold = budget.try_reserve(spent) if fit else None
        if hold is not None and fit == len(items):
            return items, hold
        if hold is None:
            fit = 0  # (a rounding edge: nothing reserved, nothing submitted)
        error = budget.refuse(costs[fit])
        await self._finish_failed([(_index(item), error) for item in items[fit:]])
        if hold is None:
            raise error
        return items[:fit], hold

    async def submit_chunk(self, items: Sequence[BatchItem], backend: BatchBackend) -> None:
        """The one place a batch is submitted: budget reservation, intent row, submit,
        id recorded. A failed submit puts the items back (retryable errors) or fails
        them."""
        hold: Hold | None = None
        if self._budget is not None:
            try:
                items, hold = await self._reserve(items)
            except BudgetExceededError:
                return
        indices = [_index(item) for item in items]
        round_ = 1 + max(self._attempts.get(i, 0) for i in indices)
        spec = self.spec
        seq = await self._db(
            self.store.add_intent,
            self.job_id,
            indices=indices,
            round=round_,
            provider=spec.provider,
            deployment=spec.base_url or "",
            model=spec.name,
            now=self._clock(),
        )
        for i in indices:
            self._attempts[i] = self._attempts.get(i, 0) + 1
        self.progress.rounds = max(self.progress.rounds, round_)
        status: BatchStatus | None = None
        error: ProviderError | None = None
        with anyio.CancelScope(shield=True):
            try:
                with anyio.fail_after(_SUBMIT_SHIELD):
                    status = await backend.submit(
                        items, metadata={"synth_job": self.job_id, "round": str(round_)}
                    )
            except ProviderError as exc:
                error = exc
            except TimeoutError:
                error = APIConnectionError(
                    f"submitting a batch took more than {_SUBMIT_SHIELD:g}s", model=spec.name
                )
            if status is not None:
                await self._db(self.store.set_submitted, seq, status.id, self._clock())
            else:
                await self._db(self.store.drop_intent, self.job_id, seq, lost=False)
        if hold is not None:
            if status is not None:
                self._holds[seq] = hold
            else:
                self._budget.release(hold)  # type: ignore[union-attr]  # refused: not billed
        if status is not None:
            rows = await self._db(self.store.batches, self.job_id)
            row = next(r for r in rows if r.seq == seq)
            self._running[seq] = _Running(row, status, set(indices))
            self.progress.batches_submitted += 1
            return
        assert error is not None
        log.warning("batch_submit_failed", job=self.job_id, items=len(indices), error=str(error))
        self._submit_failed = True
        if self._metrics is not None:
            for _ in indices:
                self._metrics.attempt_failed(spec.name, error)
        await self._after_errors([(i, error) for i in indices])

    # -- polling and collecting -------------------------------------------------------

    async def _poll(self) -> bool:
        """One look at every batch at the provider; collects those that ended. True when
        something changed (a batch ended or counts moved)."""
        changed = False
        for seq, run in list(self._running.items()):
            row = run.row
            if row.status in ("running", "canceling"):
                assert row.batch_id is not None
                try:
                    status = await self.backend.retrieve(row.batch_id)
                except NotFoundError as exc:
                    await self._gone(run, exc)
                    changed = True
                    continue
                except ProviderError as exc:
                    if not exc.retryable:
                        raise
                    log.warning("batch_poll_failed", batch=row.batch_id, error=str(exc))
                    continue
                before = run.status.counts if run.status is not None else None
                run.status = status
                counts = status.counts
                if before is None or (before.processing, before.succeeded) != (
                    counts.processing,
                    counts.succeeded,
                ):
                    changed = True
                new = {"running": "running", "canceling": "canceling"}.get(status.state)
                row.status = new or status.state  # type: ignore[assignment]
                row.processing = counts.processing
                await self._db(
                    self.store.update_batch,
                    seq,
                    status=row.status,
                    counts=(
                        counts.processing,
                        counts.succeeded,
                        counts.errored,
                        counts.canceled,
                        counts.expired,
                    ),
                    ended_at=status.ended_at,
                    error=status.error,
                )
            if row.status == "ended":
                await self._collect(run)
                changed = True
            elif row.status == "failed":
                await self._refused(run)
                changed = True
        return changed

    async def _gone(self, run: _Running, exc: ProviderError) -> None:
        """The provider no longer knows the batch (deleted, or the simulator's process
        is gone): its unanswered items are treated as errored."""
        row = run.row
        log.warning("batch_gone", job=self.job_id, batch=row.batch_id, error=str(exc))
        await self._db(self.store.update_batch, row.seq, status="collected", error=str(exc))
        del self._running[row.seq]
        self._settle(row.seq, None)  # what it ran before it was lost is unknown
        error = APIConnectionError(
            f"batch {row.batch_id} is unknown to the provider now ({exc.message})",
            model=self.spec.name,
        )
        await self._after_errors([(i, error) for i in sorted(run.items)])

    async def _refused(self, run: _Running) -> None:
        row = run.row
        reason = (run.status.error if run.status is not None else None) or row.error or "no reason"
        error = BatchRefusedError(
            f"the provider refused batch {row.batch_id} as a whole: {reason}", model=self.spec.name
        )
        await self._finish_failed([(i, error) for i in sorted(run.items)])
        await self._db(self.store.mark_collected, row.seq, self._clock())
        del self._running[row.seq]
        self._settle(row.seq, 0.0)  # refused as a whole: nothing ran

    async def _collect(self, run: _Running) -> None:
        """Every result of an ended batch, streamed; written a chunk at a time."""
        row = run.row
        assert row.batch_id is not None
        now = self._clock()
        latency = max(0.0, now - (row.submitted_at or row.intent_at))
        waiting = set(run.items)
        counts = None if run.status is None else run.status.counts
        if self.mode == "run" and not self._canceled and (counts is None or counts.canceled):
            await self._job_canceled()  # by the user (then final), or by the provider?
        done: list[tuple[int, Completion]] = []
        errors: list[tuple[int, ProviderError]] = []
        paid = 0.0  # what the batch's results cost (errored, expired items are not billed)
        async for result in self.backend.results(row.batch_id):
            i = index_of(result.custom_id)
            if i is None or i not in waiting:
                continue  # not ours, or already answered (a repeated line)
            waiting.discard(i)
            if result.outcome == "succeeded" and result.response is not None:
                completion = self._completion(i, result, latency, row.batch_id)
                paid += completion.cost or 0.0
                done.append((i, completion))
            else:
                errors.append((i, self._item_error(result, row.batch_id)))
            if len(done) >= _WRITE_CHUNK:
                await self._finish_succeeded(done)
                done = []
        await self._finish_succeeded(done)
        for i in sorted(waiting):  # the provider gave no line for it
            errors.append(
                (
                    i,
                    APIConnectionError(
                        f"batch {row.batch_id} ended without a result for this item",
                        model=self.spec.name,
                    ),
                )
            )
        if self._metrics is not None:
            for _, error in errors:
                self._metrics.attempt_failed(self.spec.name, error)
        self._settle(row.seq, paid)
        await self._after_errors(errors)
        await self._db(self.store.mark_collected, row.seq, self._clock())
        del self._running[row.seq]

    def _settle(self, seq: int, cost: float | None) -> None:
        hold = self._holds.pop(seq, None)
        if hold is not None and self._budget is not None:
            self._budget.settle(hold, cost)

    def _completion(
        self, i: int, result: BatchItemResult, latency: float, batch_id: str
    ) -> Completion:
        response = result.response
        assert response is not None
        raw = response.finish_reason
        return Completion(
            text=response.text,
            model=self.spec.name,
            usage=response.usage,
            latency=latency,
            finish_reason=_FINISH_ALIASES.get(raw) or _normalize(raw),
            raw_finish_reason=raw,
            attempts=self._attempts.get(i, 1),
            request_id=response.request_id,
            index=i,
            cost=self._price(response.usage),
            batch_id=batch_id,
        )

    def _item_error(self, result: BatchItemResult, batch_id: str) -> ProviderError:
        name = self.spec.name
        if result.outcome == "errored":
            if result.error is not None:
                if result.error.model is None:
                    result.error.model = name
                return result.error
            return APIConnectionError(f"batch {batch_id}: the item errored", model=name)
        if result.outcome == "expired":
            return BatchItemExpiredError(
                f"batch {batch_id} expired before this item was processed", model=name
            )
        who = "you canceled the job" if self._canceled else "the provider canceled the batch"
        return BatchItemCanceledError(
            f"batch {batch_id} was canceled before this item was processed ({who})", model=name
        )

    # -- outcomes ------------------------------------------------------------------

    async def _finish_succeeded(self, done: list[tuple[int, Completion]]) -> None:
        """State first (the job's record of what it paid for), then the cache, then
        the result and the metrics."""
        if not done:
            return
        await self._db(
            self.store.record,
            self.job_id,
            [
                ItemUpdate(i, "succeeded", CachedResult.of(c).to_bytes(), c.latency, c.cost)
                for i, c in done
            ],
        )
        cache = self._cache
        if cache is not None and self._cache_store:
            for i, c in done:
                key = self._keys[i] if i < len(self._keys) else None
                if key is not None:
                    await cache.store(key, c, self._cache_ttl)
        metrics = self._metrics
        p = self.progress
        for i, c in done:
            self.results[i] = c
            p.succeeded += 1
            if c.cost is None:
                p.unpriced += 1
            else:
                p.cost += c.cost
            if metrics is not None:
                u = c.usage
                metrics.request_started()
                metrics.attempt_succeeded(
                    c.model, c.latency, u.input_tokens, u.output_tokens, c.cost
                )
                metrics.request_finished(
                    c.latency,
                    output_tokens=u.output_tokens,
                    model=c.model,
                    input_tokens=u.input_tokens,
                )

    async def _after_errors(self, errors: list[tuple[int, ProviderError]]) -> None:
        """Each errored item: retried (a new round, or online) while it may be, else
        its final failure."""
        final: list[tuple[int, BaseException]] = []
        again: list[int] = []
        canceled: list[tuple[int, BaseException]] = []
        opts = self.options
        if (
            not self._canceled
            and self.mode == "run"
            and any(isinstance(e, BatchItemCanceledError) for _, e in errors)
        ):
            await self._job_canceled()  # canceled by the user, or by the provider?
        for i, error in errors:
            if isinstance(error, BatchItemCanceledError) and self._canceled:
                canceled.append((i, error))
                continue
            retryable = error.retryable or isinstance(
                error, BatchItemExpiredError | BatchItemCanceledError
            )
            if (
                self.mode != "run"
                or opts.retry == "none"
                or not retryable
                or self._attempts.get(i, 0) >= opts.max_rounds
            ):
                final.append((i, error))
            else:
                again.append(i)
        if again:
            if self._metrics is not None:
                self._metrics.retries += len(again)
            await self._db(
                self.store.record, self.job_id, [ItemUpdate(i, "pending") for i in again]
            )
            if opts.retry == "online" and self._online is not None and self._tg is not None:
                for i in again:
                    self._tg.start_soon(self._run_online, i)
            else:
                self._pending.update(again)
        await self._finish_failed(final)
        await self._finish_failed(canceled, outcome="canceled")

    async def _run_online(self, i: int) -> None:
        """One errored item through the normal online path (router, retries, fallback)."""
        assert self._online is not None
        request = self._requests[i]
        assert request is not None
        async with self._limit:
            result = await self._online(request, i)
        self._attempts[i] = self._attempts.get(i, 0) + 1
        if isinstance(result, Completion):
            result.attempts += self._attempts[i] - 1
            await self._finish_succeeded_online(i, result)
        else:
            result.attempts = self._attempts[i]
            await self._finish_failed([(i, result.error)], count_metrics=False)

    async def _finish_succeeded_online(self, i: int, c: Completion) -> None:
        """An online answer: its metrics are recorded by the online path already."""
        await self._db(
            self.store.record,
            self.job_id,
            [ItemUpdate(i, "succeeded", CachedResult.of(c).to_bytes(), c.latency, c.cost)],
        )
        key = self._keys[i] if i < len(self._keys) else None
        if self._cache is not None and self._cache_store and key is not None:
            await self._cache.store(key, c, self._cache_ttl)
        c.index = i
        self.results[i] = c
        self.progress.succeeded += 1
        if c.cost is not None:
            self.progress.cost += c.cost

    async def _finish_failed(
        self,
        failures: Sequence[tuple[int, BaseException]],
        *,
        outcome: Literal["failed", "canceled"] = "failed",
        count_metrics: bool = True,
    ) -> None:
        if not failures:
            return
        updates = []
        for i, error in failures:
            message = error.message if isinstance(error, ProviderError) else str(error)
            model = getattr(error, "model", None) or self.spec.name
            updates.append(
                ItemUpdate(
                    i,
                    outcome,
                    error_type=type(error).__name__,
                    error=message,
                    status=getattr(error, "status", None),
                    error_model=model,
                )
            )
        await self._db(self.store.record, self.job_id, updates)
        metrics = self._metrics
        for i, error in failures:
            self.results[i] = Failure(
                error, index=i, model=self.spec.name, attempts=self._attempts.get(i, 0)
            )
            self.progress.failed += 1
            if metrics is not None and count_metrics:
                metrics.request_started()
                metrics.request_finished(None, error, model=self.spec.name)

    # -- canceling -------------------------------------------------------------------

    async def request_cancel(self) -> int:
        """Ask the provider to cancel every batch of the job still running; returns
        how many were asked."""
        asked = 0
        for run in list(self._running.values()):
            row = run.row
            if row.status not in ("running", "canceling") or row.batch_id is None:
                continue
            try:
                status = await self.backend.cancel(row.batch_id)
            except NotFoundError as exc:
                await self._gone(run, exc)
                continue
            run.status = status
            row.status = "canceling" if status.state == "running" else status.state
            await self._db(self.store.update_batch, row.seq, status=row.status)
            asked += 1
        return asked

    async def _cancel_rest(self) -> None:
        """Inputs never submitted end canceled. Those of a batch still canceling stay
        with it: a later collect reads what it finished."""
        error = BatchItemCanceledError(
            "the job was canceled before this item ran", model=self.spec.name
        )
        rest = sorted(self._pending)
        self._pending.clear()
        if rest:
            await self._finish_failed([(i, error) for i in rest], outcome="canceled")

    async def _job_canceled(self) -> bool:
        """Whether the job was canceled meanwhile (``synth batch cancel`` from another
        process): then nothing more is submitted and its pending inputs end canceled."""
        job = await self._db(self.store.job, self.job_id)
        if job is None or job.status != "canceled":
            return False
        self._canceled = True
        await self._cancel_rest()
        return True


def _index(item: BatchItem) -> int:
    i = index_of(item.custom_id)
    if i is None:
        raise SynthError(f"internal error: {item.custom_id!r} is not a batch job's custom_id")
    return i
