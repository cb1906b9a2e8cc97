"""Simulated batch APIs: one in-memory engine behind the mock server's Anthropic Message
Batches and OpenAI Batch routes and the in-process ``sim`` provider's batch backend.

Time is computed, not driven: a batch's items finish one after another, evenly
spread over ``SimConfig.batch_processing_time`` from its creation, and each poll
processes the items whose time has come (on the injectable ``clock``), so no task
or timer runs per batch and a test moves time by moving its clock. An item is
answered by :meth:`Simulator.decide`, so its text and usage are what the online
call gives (the engine keeps its own seen-counter: the first time a content is
batched it gets the answer of the first time it is asked online). Online fault
rates do not apply (a batch item has no HTTP exchange of its own); items fail
with ``batch_error_rate`` instead, drawn from the item's answer and the seed.

Memory: a batch keeps each item's answer until the batch is deleted; requests
are dropped as they are processed. At most ``max_batches`` batches are kept: past
that, the oldest ended ones are forgotten (their ids then answer 404).
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from .._core import fingerprint  # type: ignore[import-not-found,unused-ignore]
from .._types import Request
from ._config import SimConfig
from ._engine import Outcome, Simulator
from ._wire import WireError

__all__ = [
    "CUSTOM_ID",
    "MAX_BATCHES",
    "BatchEngine",
    "BatchError",
    "BatchStats",
    "BatchView",
    "EngineItem",
    "ItemResult",
    "SimBatch",
]

#: Custom ids both APIs accept (Anthropic's rule, the stricter one).
CUSTOM_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: Batches kept in memory before the oldest ended ones are dropped.
MAX_BATCHES = 1000
#: Per-item errors ``batch_error_rate`` draws from: (cumulative share, status, kind, message).
_ITEM_ERRORS = (
    (0.5, 529, "overloaded", "Overloaded"),
    (0.8, 500, "api_error", "Internal server error"),
    (1.0, 400, "invalid_request", "The request could not be processed (simulated)"),
)
_U32 = 1.0 / 4294967296.0

ItemState = Literal["succeeded", "errored", "canceled", "expired"]
#: ``in_progress``, ``canceling`` or ``ended`` (Anthropic's words; each wire renames them).
Processing = Literal["in_progress", "canceling", "ended"]
#: How an ended batch ended: every item ran, it was canceled, or its window ran out.
Ending = Literal["completed", "canceled", "expired"]


class BatchError(Exception):
    """A batch call the API refuses: ``status`` 400 (invalid) or 404 (unknown id)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class EngineItem:
    """One request of a new batch: its answer's request, or the error its params earn."""

    custom_id: str
    model: str
    request: Request | None
    #: Set when the params were invalid: the item ends ``errored`` with this error.
    invalid: WireError | None = None


@dataclass(slots=True)
class ItemResult:
    """What became of one item."""

    custom_id: str
    model: str
    state: ItemState
    #: The answer, when ``succeeded``.
    outcome: Outcome | None = None
    #: The error, when ``errored``.
    error: WireError | None = None


@dataclass(slots=True)
class _Item:
    custom_id: str
    model: str
    request: Request | None
    invalid: WireError | None
    result: ItemResult | None = None


@dataclass(slots=True)
class SimBatch:
    """One batch. Times are on the engine's clock; :class:`BatchView` gives Unix seconds."""

    id: str
    created: float
    items: list[_Item]
    processing_time: float
    expire_after: float
    cancel_time: float
    metadata: dict[str, str] = field(default_factory=dict)
    #: Items processed so far (always a prefix of ``items``).
    done: int = 0
    succeeded: int = 0
    errored: int = 0
    #: When a cancel was asked for.
    cancel_at: float | None = None

    def finish_time(self, index: int) -> float:
        """When item ``index`` is processed (the last one at ``created + processing_time``)."""
        return self.created + self.processing_time * (index + 1) / len(self.items)

    @property
    def expires(self) -> float:
        return self.created + self.expire_after

    def ended_at(self) -> tuple[float, Ending] | None:
        """When and how the batch ends, if that is settled (it may still be ahead)."""
        n = len(self.items)
        natural = self.finish_time(n - 1)
        if natural <= self.expires and (self.cancel_at is None or natural <= self.cancel_at):
            return natural, "completed"
        if self.cancel_at is not None and self.cancel_at < self.expires:
            return self.cancel_at + self.cancel_time, "canceled"
        return self.expires, "expired"


@dataclass(frozen=True, slots=True)
class BatchView:
    """A batch as seen at one moment (times in Unix seconds)."""

    id: str
    processing: Processing
    #: How it ended, once ``processing == "ended"``.
    ending: Ending | None
    total: int
    processing_count: int
    succeeded: int
    errored: int
    canceled: int
    expired: int
    created_at: float
    expires_at: float
    ended_at: float | None
    cancel_initiated_at: float | None
    metadata: Mapping[str, str]


@dataclass(slots=True)
class BatchStats:
    """Counters for tests: one creation per batch, how many items went in."""

    batches_created: int = 0
    items_submitted: int = 0
    batches_canceled: int = 0
    batches_deleted: int = 0
    #: Items answered (succeeded or errored) so far.
    items_processed: int = 0


class BatchEngine:
    """Batches of one :class:`SimConfig`, on ``clock`` (monotonic seconds).

    Unix times are ``wall()`` at construction plus the clock's progress since, so an
    injected clock moves reported times as well.
    """

    def __init__(
        self,
        config: SimConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        max_batches: int = MAX_BATCHES,
    ) -> None:
        self.config = config = config or SimConfig()
        self.simulator = Simulator(config, clock=clock)
        self.stats = BatchStats()
        self._clock = clock
        self._offset = wall() - clock()
        self._batches: OrderedDict[str, SimBatch] = OrderedDict()
        self._max_batches = max_batches
        self._seed = config.seed.to_bytes(16, "big", signed=True)

    def now(self) -> float:
        """The engine's clock."""
        return self._clock()

    def unix(self, at: float) -> float:
        """A clock reading as Unix seconds."""
        return at + self._offset

    def create(
        self,
        items: Sequence[EngineItem],
        *,
        prefix: str,
        metadata: Mapping[str, str] | None = None,
        max_requests: int = 100_000,
    ) -> SimBatch:
        """A new batch of ``items``; :class:`BatchError` 400 for an empty batch, too many
        items, a bad or repeated ``custom_id``."""
        if not items:
            raise BatchError(400, "requests: List should have at least 1 item")
        if len(items) > max_requests:
            raise BatchError(
                400, f"requests: a batch holds at most {max_requests} requests, got {len(items)}"
            )
        seen: set[str] = set()
        for i, item in enumerate(items):
            if not CUSTOM_ID.fullmatch(item.custom_id):
                raise BatchError(
                    400,
                    f"requests.{i}.custom_id: String should match pattern "
                    f"'^[a-zA-Z0-9_-]{{1,64}}$'",
                )
            if item.custom_id in seen:
                raise BatchError(
                    400,
                    f"requests.{i}.custom_id: Duplicate custom_id {item.custom_id!r}; "
                    "custom_id must be unique within a batch",
                )
            seen.add(item.custom_id)
        stats = self.stats
        stats.batches_created += 1
        stats.items_submitted += len(items)
        serial = stats.batches_created
        token = fingerprint(self._seed + serial.to_bytes(8, "big") + b"batch")[:12].hex()
        config = self.config
        batch = SimBatch(
            id=f"{prefix}{token}",
            created=self.now(),
            items=[_Item(i.custom_id, i.model, i.request, i.invalid) for i in items],
            processing_time=config.batch_processing_time,
            expire_after=config.batch_expire_after,
            cancel_time=config.batch_cancel_time,
            metadata=dict(metadata or {}),
        )
        self._batches[batch.id] = batch
        self._evict()
        return batch

    def _evict(self) -> None:
        excess = len(self._batches) - self._max_batches
        if excess <= 0:
            return
        now = self.now()
        for batch_id in [b.id for b in self._batches.values() if self._ended(b, now)][:excess]:
            del self._batches[batch_id]

    def get(self, batch_id: str) -> SimBatch:
        """The batch, processed up to now; :class:`BatchError` 404 if unknown."""
        batch = self._batches.get(batch_id)
        if batch is None:
            raise BatchError(404, f"batch {batch_id!r} not found")
        self._advance(batch, self.now())
        return batch

    def batches(self) -> list[SimBatch]:
        """Every batch kept, newest first."""
        now = self.now()
        found = list(reversed(self._batches.values()))
        for batch in found:
            self._advance(batch, now)
        return found

    def view(self, batch: SimBatch, *, at: float | None = None) -> BatchView:
        """``batch`` as seen at ``at`` (default now)."""
        now = self.now() if at is None else at
        self._advance(batch, now)
        n = len(batch.items)
        left = n - batch.done
        end = batch.ended_at()
        ended = end is not None and end[0] <= now
        canceled = expired = 0
        processing: Processing = "in_progress"
        ending: Ending | None = None
        ended_at: float | None = None
        if ended and end is not None:
            processing, ended_at, ending = "ended", self.unix(end[0]), end[1]
            if ending == "canceled":
                canceled = left
            elif ending == "expired":
                expired = left
            left = 0
        elif batch.cancel_at is not None:
            processing = "canceling"
        return BatchView(
            id=batch.id,
            processing=processing,
            ending=ending,
            total=n,
            processing_count=left,
            succeeded=batch.succeeded,
            errored=batch.errored,
            canceled=canceled,
            expired=expired,
            created_at=self.unix(batch.created),
            expires_at=self.unix(batch.expires),
            ended_at=ended_at,
            cancel_initiated_at=None if batch.cancel_at is None else self.unix(batch.cancel_at),
            metadata=batch.metadata,
        )

    def cancel(self, batch_id: str) -> BatchView:
        """Stop ``batch_id``: what is processed by now keeps its result, the rest ends
        ``canceled`` once the batch has been ``canceling`` for ``batch_cancel_time``.

        Returns what the APIs answer a cancel with: ``canceling`` (even when that
        phase lasts no time). A batch already ended or canceling is left as it is.
        """
        batch = self.get(batch_id)
        now = self.now()
        if batch.cancel_at is not None or self._ended(batch, now):
            return self.view(batch, at=now)
        batch.cancel_at = now
        self.stats.batches_canceled += 1
        view = self.view(batch, at=now)
        return replace(
            view,
            processing="canceling",
            ending=None,
            ended_at=None,
            processing_count=len(batch.items) - batch.done,
            canceled=0,
        )

    def created_view(self, batch: SimBatch) -> BatchView:
        """What the APIs answer a create with: accepted, every item still processing."""
        return replace(
            self.view(batch, at=batch.created),
            processing="in_progress",
            ending=None,
            ended_at=None,
            processing_count=len(batch.items),
            succeeded=0,
            errored=0,
            canceled=0,
            expired=0,
        )

    def delete(self, batch_id: str) -> None:
        """Forget an ended batch; :class:`BatchError` 400 while it is still running."""
        batch = self.get(batch_id)
        if not self._ended(batch, self.now()):
            raise BatchError(
                400, f"Batch {batch_id} cannot be deleted while it is still processing"
            )
        del self._batches[batch_id]
        self.stats.batches_deleted += 1

    def results(self, batch_id: str) -> Iterator[ItemResult]:
        """Each item's result, in submission order; :class:`BatchError` 400 before the
        batch has ended."""
        batch = self.get(batch_id)
        end = batch.ended_at()
        if end is None or end[0] > self.now():
            raise BatchError(400, f"Batch {batch_id} has not ended yet: no results")
        return self._results(batch, end[1])

    @staticmethod
    def _results(batch: SimBatch, ending: Ending) -> Iterator[ItemResult]:
        left: ItemState = "canceled" if ending == "canceled" else "expired"
        for item in batch.items:
            result = item.result
            yield result if result is not None else ItemResult(item.custom_id, item.model, left)

    def _ended(self, batch: SimBatch, now: float) -> bool:
        self._advance(batch, now)
        end = batch.ended_at()
        return end is not None and end[0] <= now

    def _advance(self, batch: SimBatch, now: float) -> None:
        """Process the items whose time has come (not after a cancel or the expiry)."""
        limit = min(now, batch.expires)
        if batch.cancel_at is not None:
            limit = min(limit, batch.cancel_at)
        items = batch.items
        n = len(items)
        done = batch.done
        while done < n and batch.finish_time(done) <= limit:
            result = self._answer(items[done])
            items[done].result = result
            items[done].request = None
            if result.state == "succeeded":
                batch.succeeded += 1
            else:
                batch.errored += 1
            done += 1
        self.stats.items_processed += done - batch.done
        batch.done = done

    def _answer(self, item: _Item) -> ItemResult:
        if item.invalid is not None or item.request is None:
            error = item.invalid or WireError(400, "invalid_request", "invalid request")
            return ItemResult(item.custom_id, item.model, "errored", error=error)
        outcome = self.simulator.decide(item.request)
        rate = self.config.batch_error_rate
        if rate > 0.0:
            digest = fingerprint(outcome.token.encode() + self._seed + b"batch-error")
            bits = int.from_bytes(digest[:8], "big")
            if (bits & 0xFFFFFFFF) * _U32 < rate:
                pick = (bits >> 32) * _U32
                status, kind, message = next(
                    (e[1:] for e in _ITEM_ERRORS if pick < e[0]), _ITEM_ERRORS[-1][1:]
                )
                error = WireError(status, kind, message)
                return ItemResult(item.custom_id, item.model, "errored", error=error)
        return ItemResult(item.custom_id, item.model, "succeeded", outcome=outcome)
