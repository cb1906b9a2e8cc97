"""Bounded-concurrency execution of a batch over lazily consumed input.

A fixed pool of ``concurrency`` workers pulls inputs one at a time, so a
1,000,000-item generator runs in memory proportional to the pool, never one
task per input up front. Each worker turns an input into exactly one result
(the ``process`` callable never raises for an input's failure) and hands it to
``emit``; backpressure from ``emit`` stops workers pulling more input.

In input order (:class:`InOrder`), results that finish early wait for the ones
before them in a buffer, and workers stop pulling input while the oldest
unfinished input is ``window`` positions behind: memory stays bounded even when
one slow request holds up the line.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Generic, Protocol, TypeVar

import anyio
import anyio.lowlevel

__all__ = ["Governor", "InOrder", "InputFeed", "Timings", "run_workers", "single_error"]

T = TypeVar("T")
#: A worker yields to the event loop at least once per this many inputs.
_YIELD_EVERY = 32
R = TypeVar("R")


class Governor(Protocol):
    """The memory governor as the scheduler sees it."""

    async def acquire(self) -> None: ...

    def release(self) -> None: ...


class InputFeed(Generic[T]):
    """Hands out ``(index, item)`` pairs from a sync or async iterable, on demand."""

    __slots__ = ("_aiter", "_iter", "_lock", "count", "exhausted")

    def __init__(self, inputs: Iterable[T] | AsyncIterable[T]) -> None:
        self._iter: Iterator[T] | None = None
        self._aiter: AsyncIterator[T] | None = None
        if isinstance(inputs, AsyncIterable):
            self._aiter = aiter(inputs)
            # an async generator cannot be advanced concurrently; fast_acquire: no extra
            # event-loop round trip when the lock is free (the common case)
            self._lock = anyio.Lock(fast_acquire=True)
        elif isinstance(inputs, Iterable):
            if isinstance(inputs, str | bytes):
                raise TypeError(
                    "inputs is a single string; pass a list of prompts (e.g. [prompt]) "
                    "or use generate() for one prompt"
                )
            self._iter = iter(inputs)
        else:
            raise TypeError(
                "inputs must be an iterable or async iterable of prompts, "
                f"got {type(inputs).__name__}"
            )
        self.count = 0
        self.exhausted = False

    async def next(self) -> tuple[int, T] | None:
        if self.exhausted:
            return None
        if self._iter is not None:
            try:
                item = next(self._iter)
            except StopIteration:
                self.exhausted = True
                return None
        else:
            assert self._aiter is not None
            async with self._lock:
                if self.exhausted:
                    return None
                try:
                    item = await anext(self._aiter)
                except StopAsyncIteration:
                    self.exhausted = True
                    return None
        index = self.count
        self.count += 1
        return index, item


class InOrder(Generic[R]):
    """Re-orders results to input order before ``emit``; see :func:`run_workers`.

    ``pending`` holds results that finished before an earlier input: at most about
    ``window`` of them, because :meth:`admit` holds workers back until the oldest
    unfinished input is within ``window`` of the next one to pull.
    """

    __slots__ = ("_emit", "_flushing", "_room", "feed", "next_index", "pending", "window")

    def __init__(
        self,
        feed: InputFeed[T],
        emit: Callable[[int, R], Awaitable[None] | None],
        window: int,
    ) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.feed: InputFeed[object] = feed  # type: ignore[assignment]
        self._emit = emit
        self.window = window
        self.next_index = 0
        self.pending: dict[int, R] = {}
        self._flushing = False
        self._room = anyio.Event()

    async def admit(self) -> None:
        """Wait while pulling one more input would run ``window`` ahead of the output."""
        while self.feed.count >= self.next_index + self.window and not self.feed.exhausted:
            await self._room.wait()

    async def put(self, index: int, result: R) -> None:
        """Buffer ``result``; emit every result that is now next in line."""
        self.pending[index] = result
        if self._flushing:
            return  # the worker already flushing will reach this one
        self._flushing = True
        try:
            while self.next_index in self.pending:
                # stays in ``pending`` until emitted: a stop mid-emit leaves it a leftover
                pending = self._emit(self.next_index, self.pending[self.next_index])
                if pending is not None:
                    await pending
                del self.pending[self.next_index]
                self.next_index += 1
                room, self._room = self._room, anyio.Event()
                room.set()
        finally:
            self._flushing = False

    def leftovers(self) -> list[tuple[int, R]]:
        """Finished results never emitted (an earlier input did not finish), by index."""
        return sorted(self.pending.items())


class Timings(Protocol):
    """Where the scheduler reports waits (the engine's metrics)."""

    detailed: bool

    @property
    def clock(self) -> Callable[[], float]: ...

    def waited(self, stage: str, seconds: float) -> None: ...


async def run_workers(
    feed: InputFeed[T],
    process: Callable[[int, T], Awaitable[R]],
    emit: Callable[[int, R], Awaitable[None] | None],
    *,
    concurrency: int,
    admit: Callable[[], Awaitable[None] | None] | None = None,
    in_order: InOrder[R] | None = None,
    governor: Governor | None = None,
    timings: Timings | None = None,
) -> None:
    """Run ``concurrency`` workers until the feed is exhausted.

    ``admit`` (the router's pause while nothing can serve) is called before each
    input is pulled, and what it returns awaited unless ``None``; ``governor`` (the
    memory governor) may hold workers back while memory is short: it is acquired
    before an input is pulled, released once its result is handed on.
    With ``in_order`` results reach ``emit`` in input order (``in_order`` must have
    been made with this feed and ``emit``). ``timings`` receives the seconds workers
    spent waiting: for input (``input``), the governor (``memory``), the router's
    pause (``paused``), and the consumer, in-order window included (``output``).
    Any exception other than an input's own failure (which ``process`` turns into a
    result) cancels the other workers and propagates.
    """
    window: Callable[[], Awaitable[None]] | None = None
    if in_order is not None:
        window, emit = in_order.admit, in_order.put
    if timings is not None and not timings.detailed:
        timings = None

    async def worker() -> None:
        """Pull, process and hand on inputs until the feed is exhausted; the plain
        path (no timings, no governor) awaits nothing it does not need."""
        governed = governor is not None
        done = 0
        while True:
            done += 1
            if done % _YIELD_EVERY == 0:
                # inputs answered without suspending (cache hits, an instant model) would
                # otherwise hold the event loop: let other tasks (probes, a display) run
                await anyio.lowlevel.checkpoint()
            if admit is not None:
                gate = admit()  # None on the hot path: nothing to await or time
                if gate is not None:
                    if timings is None:
                        await gate
                    else:
                        since = timings.clock()
                        await gate
                        timings.waited("paused", timings.clock() - since)
            if window is not None:
                if timings is None:
                    await window()
                else:
                    since = timings.clock()
                    await window()
                    timings.waited("output", timings.clock() - since)
            if governed:
                since = timings.clock() if timings is not None else 0.0
                await governor.acquire()  # type: ignore[union-attr]
                if timings is not None:
                    timings.waited("memory", timings.clock() - since)
            try:
                if timings is None:
                    nxt = await feed.next()
                else:
                    since = timings.clock()
                    nxt = await feed.next()
                    timings.waited("input", timings.clock() - since)
                if nxt is None:
                    return
                index, item = nxt
                result = await process(index, item)
                pending = emit(index, result)
                if pending is not None:
                    if timings is None:
                        await pending
                    else:
                        since = timings.clock()
                        await pending
                        timings.waited("output", timings.clock() - since)
            finally:
                if governed:
                    governor.release()  # type: ignore[union-attr]

    try:
        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(worker)
    except BaseExceptionGroup as group:
        raise single_error(group) from None


def single_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one real error of a task group (others are the cancellations it caused)."""
    leaves: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        exc = stack.pop()
        if isinstance(exc, BaseExceptionGroup):
            stack.extend(exc.exceptions)
        else:
            leaves.append(exc)
    cancelled = anyio.get_cancelled_exc_class()
    real = [e for e in leaves if not isinstance(e, cancelled)]
    if not real:
        return group
    # several workers can hit the same fatal error in one tick: one of them stands
    # for all (a group of identical configuration errors helps nobody)
    if all(type(e) is type(real[0]) for e in real):
        return real[0]
    return group
