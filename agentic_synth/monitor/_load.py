"""Load generation and per-request measurement for ``synth bench``.

Closed loop: ``concurrency`` workers, each starting its next request when its last
one ends: throughput at a fixed parallelism. Open loop: starts follow a schedule
(constant or Poisson arrivals at ``rate``, seeded) whatever the completions, as
real traffic does; ``concurrency`` only caps requests in flight. A start later
than its slot (the cap was reached, or the event loop was busy) is recorded as
*schedule lag*, so an overloaded client shows in the report instead of quietly
turning the run into a closed loop.

Metric definitions (as GuideLLM and vLLM's ``benchmark_serving`` define them), per
request, from this process's clock:

* E2E latency = end - start, from the request entering the engine to its result;
* TTFT = (first non-empty text chunk) - start (streams);
* TPOT = (E2E - TTFT) / (output_tokens - 1), for requests with >= 2 output tokens;
* ITL = the gaps between consecutive non-empty text chunks of one stream (a chunk
  may carry several tokens: the simulator sends 4 words a chunk);

and per run:

* throughput = succeeded requests / wall seconds (with a ``duration``: those that
  ended within it / ``duration``; the ones still in flight then finish, and count
  in the latency figures);
* output tokens/s = output tokens of the succeeded requests / wall seconds (the
  same window);
* error rate = failed / (succeeded + failed): cancelled requests (a run stopped
  early) are neither;
* failed requests never enter latency figures;
* percentiles are nearest-rank over every request of the run (exact: no binning,
  no interpolation): the smallest value with at least a fraction q of the values
  at or below it.

Every request is kept in flat arrays (about 40 bytes each) rather than a
histogram, so the percentiles are exact and a report can carry real samples.
"""

from __future__ import annotations

import math
import random
import time
from array import array
from bisect import bisect_right
from collections import Counter
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Sequence,
)
from dataclasses import dataclass
from itertools import islice, pairwise
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import anyio

from .._exceptions import ConfigurationError
from .._scheduler import InputFeed, single_error
from .._types import Completion, Result, TextDelta

if TYPE_CHECKING:
    from .._request import Prompt
    from .._synth import Synth
    from ._metrics import MetricsSnapshot

__all__ = [
    "ARRIVALS",
    "METRIC_DEFINITIONS",
    "PERCENTILES",
    "Api",
    "Arrival",
    "Load",
    "Progress",
    "ProgressHook",
    "Recorder",
    "arrival_offsets",
    "distribution",
    "inter_chunk_latencies",
    "paced",
    "percentile",
    "run_load",
    "tpot",
]

T = TypeVar("T")

Arrival = Literal["constant", "poisson"]
Api = Literal["generate_batch", "iter_batch", "generate_stream"]
ARRIVALS: tuple[Arrival, ...] = ("constant", "poisson")
#: Reported percentiles: (suffix, fraction).
PERCENTILES = (("p50", 0.50), ("p90", 0.90), ("p95", 0.95), ("p99", 0.99), ("p999", 0.999))

#: Each figure next to its formula, for the reports (the module doc says the same).
METRIC_DEFINITIONS: dict[str, str] = {
    "latency": "E2E latency = end - start (request entering the engine to its result)",
    "ttft": "TTFT = first non-empty text chunk - start",
    "tpot": "TPOT = (E2E - TTFT) / (output_tokens - 1), requests with >= 2 output tokens",
    "itl": "ITL = gaps between consecutive non-empty text chunks of a stream (per chunk)",
    "throughput": "throughput = succeeded requests / wall seconds (--duration: those ended "
    "within it / duration)",
    "output_tokens_per_s": "output tokens/s = output tokens of succeeded requests / wall seconds",
    "error_rate": "error rate = failed / (succeeded + failed); cancelled excluded",
    "cpu_us_per_request": "CPU us/request = process CPU seconds / (succeeded + failed) * 1e6",
    "percentiles": "pXX = nearest rank over every request of the run; failures excluded",
    "lag": "schedule lag = actual start - scheduled start (open loop)",
    "achieved_rate": "achieved rate = (starts - 1) / (last start - first start) (open loop)",
}


# -- metric definitions ------------------------------------------------------------


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """Nearest rank: the smallest value with at least ``q`` of ``ordered`` (sorted)
    at or below it; ``None`` for no values."""
    if not ordered:
        return None
    rank = max(1, math.ceil(q * len(ordered) - 1e-9))  # 0.9 * 10 is 9.000000000000002
    return ordered[min(rank, len(ordered)) - 1]


def distribution(values: Iterable[float], name: str) -> dict[str, float | None]:
    """``{name}_p50 .. {name}_p999``, ``{name}_mean`` and ``{name}_max``."""
    ordered = sorted(values)
    out = {f"{name}_{suffix}": percentile(ordered, q) for suffix, q in PERCENTILES}
    out[f"{name}_mean"] = math.fsum(ordered) / len(ordered) if ordered else None
    out[f"{name}_max"] = ordered[-1] if ordered else None
    return out


def tpot(e2e: float, ttft: float, output_tokens: int) -> float | None:
    """TPOT = (E2E - TTFT) / (output_tokens - 1); ``None`` under 2 output tokens (the
    first token is TTFT's, so one token has no time per *output* token)."""
    if output_tokens < 2:
        return None
    return (e2e - ttft) / (output_tokens - 1)


def inter_chunk_latencies(times: Sequence[float]) -> list[float]:
    """ITL: the gaps between consecutive text chunks of one stream."""
    return [b - a for a, b in pairwise(times)]


# -- what one run measured -----------------------------------------------------------


class Recorder:
    """Every request of one run, in flat arrays.

    Starts are stamped when a worker pulls the request's input (the moment it
    enters the engine); outcomes are appended with the request's index. A failure
    on the batch path has no end time (a Failure record carries none): it counts
    as ending when it started. ``checkpoint`` (every N starts, read a probe) serves
    the memory suite. :func:`run_load` sets ``wall`` and ``cpu``.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.perf_counter,
        *,
        checkpoint: tuple[int, Callable[[], float | None]] | None = None,
    ) -> None:
        self.clock = clock
        self.t0 = clock()
        #: By request index: seconds since t0 the request started.
        self.starts = array("d")
        #: By request index (open loop): seconds its start was behind schedule.
        self.lags = array("d")
        #: By outcome: request index, end (seconds since t0), ok, output tokens, TTFT.
        self.index = array("q")
        self.ends = array("d")
        self.ok = bytearray()
        self.tokens = array("q")
        self.ttft = array("d")
        #: ITL gaps of every stream, pooled.
        self.itl = array("d")
        #: Outcome position -> error class, for failures only.
        self.errors: dict[int, str] = {}
        self.cached = 0
        #: ``(requests started, probe value)`` every ``checkpoint[0]`` starts.
        self.checkpoints: list[tuple[int, float]] = []
        #: Seconds and process CPU seconds of the run (bookkeeping after it excluded).
        self.wall = 0.0
        self.cpu = 0.0
        #: A run of fixed duration: throughput counts the successes that ended within it.
        self.window: float | None = None
        self._every = 0 if checkpoint is None else checkpoint[0]
        self._probe: Callable[[], float | None] | None = (
            None if checkpoint is None else checkpoint[1]
        )

    def now(self) -> float:
        return self.clock() - self.t0

    def nbytes(self) -> int:
        """Bytes of the arrays: the bench's own share of the process's memory growth."""
        arrays = (self.starts, self.lags, self.index, self.ends, self.tokens, self.ttft, self.itl)
        return sum(a.itemsize * len(a) for a in arrays) + len(self.ok)

    def started(self, lag: float | None = None) -> int:
        """Stamp a start; return its request index."""
        starts = self.starts
        starts.append(self.clock() - self.t0)
        if lag is not None:
            self.lags.append(lag)
        n = len(starts)
        if self._every and n % self._every == 0 and self._probe is not None:
            value = self._probe()
            if value is not None:
                self.checkpoints.append((n, value))
        return n - 1

    def succeeded(
        self,
        index: int,
        end: float,
        output_tokens: int,
        *,
        chunks: Sequence[float] | None = None,
        cached: bool = False,
    ) -> None:
        """A success ending at ``end``; ``chunks``: the times of its non-empty text
        chunks (streams), which give TTFT and ITL."""
        if chunks:
            self.ttft.append(chunks[0] - self.starts[index])
            self.itl.extend(inter_chunk_latencies(chunks))
        else:
            self.ttft.append(math.nan)
        self.cached += cached
        self._outcome(index, end, True, output_tokens)

    def failed(self, index: int, end: float | None, error: str) -> None:
        """A failure at ``end`` (``None``: unknown): in the error rate, never in latencies."""
        self.errors[len(self.ends)] = error
        self.ttft.append(math.nan)
        self._outcome(index, math.nan if end is None else end, False, 0)

    def _outcome(self, index: int, end: float, ok: bool, output_tokens: int) -> None:
        self.index.append(index)
        self.ends.append(end)
        self.ok.append(ok)
        self.tokens.append(output_tokens)

    # -- figures ----------------------------------------------------------------

    def figures(self, *, streams: bool = False) -> dict[str, Any]:
        """The run's figures under the definitions of the module doc."""
        starts, ends, ok, tokens = self.starts, self.ends, self.ok, self.tokens
        wall, cpu = self.wall, self.cpu
        latencies = self.latencies()
        succeeded = len(latencies)
        failed = len(ends) - succeeded
        finished = len(ends)
        # Over a fixed window, the drain after it (fewer and fewer in flight, the slowest
        # last) would pull throughput down: count what ended within it, over it.
        span = wall if self.window is None else min(wall, self.window)
        within = math.inf if self.window is None else self.window
        done = [k for k, good in enumerate(ok) if good and ends[k] <= within]
        out_tokens = sum(tokens[k] for k in done)
        figures: dict[str, Any] = {
            "requests": len(starts),
            "succeeded": succeeded,
            "failed": failed,
            "seconds": wall,
            "throughput": len(done) / span if span > 0 else 0.0,
            "output_tokens_per_s": out_tokens / span if span > 0 else 0.0,
            "error_rate": failed / finished if finished else 0.0,
            "cpu_us_per_request": cpu / finished * 1e6 if finished else 0.0,
            **distribution(latencies, "latency"),
        }
        if streams:
            ttfts = [t for t, good in zip(self.ttft, ok, strict=True) if good and t == t]
            tpots = []
            for k, good in enumerate(ok):
                ttft = self.ttft[k]
                if good and ttft == ttft:  # not NaN: the stream had text
                    e2e = ends[k] - starts[self.index[k]]
                    value = tpot(e2e, ttft, tokens[k])
                    if value is not None:
                        tpots.append(value)
            figures.update(distribution(ttfts, "ttft"))
            figures.update(distribution(tpots, "tpot"))
            figures.update(distribution(self.itl, "itl"))
        if self.lags:
            n = len(starts)
            span = starts[-1] - starts[0] if n > 1 else 0.0
            figures["achieved_rate"] = (n - 1) / span if span > 0 else None
            lags = sorted(self.lags)
            figures["lag_p50"] = percentile(lags, 0.5)
            figures["lag_p99"] = percentile(lags, 0.99)
            figures["lag_max"] = lags[-1]
        figures["cached"] = self.cached
        figures["errors_by_class"] = dict(Counter(self.errors.values()))
        return figures

    def latencies(self) -> list[float]:
        """E2E latency of every success, in outcome order."""
        starts, index, ok = self.starts, self.index, self.ok
        return [end - starts[index[k]] for k, end in enumerate(self.ends) if ok[k]]

    def timeline(self, points: int = 50) -> list[dict[str, float]]:
        """Throughput (successes per second) per time bin, and requests in flight at
        each bin's middle (started, not yet finished: cancelled ones to the end)."""
        wall = self.wall
        if wall <= 0 or not self.starts:
            return []
        width = max(wall / points, 1e-3)
        bins = max(1, math.ceil(wall / width - 1e-9))
        done = [0] * bins
        for end, good in zip(self.ends, self.ok, strict=True):
            if good:
                done[min(int(end / width), bins - 1)] += 1
        starts = sorted(self.starts)
        ends = sorted(
            end if end == end else self.starts[self.index[k]]  # NaN: unknown, at its start
            for k, end in enumerate(self.ends)
        )
        rows = []
        for b in range(bins):
            mid = (b + 0.5) * width
            in_flight = bisect_right(starts, mid) - bisect_right(ends, mid)
            rows.append({"t": b * width, "throughput": done[b] / width, "in_flight": in_flight})
        return rows

    def samples(self, limit: int, seed: int = 0) -> list[dict[str, Any]]:
        """Up to ``limit`` outcomes, chosen uniformly at random (seeded) when there are
        more, in outcome order."""
        n = len(self.ends)
        chosen: Iterable[int] = (
            range(n) if n <= limit else sorted(random.Random(seed).sample(range(n), limit))
        )
        rows = []
        for k in chosen:
            index = self.index[k]
            start, end, good = self.starts[index], self.ends[k], bool(self.ok[k])
            ttft = self.ttft[k]
            row: dict[str, Any] = {
                "index": index,
                "start": round(start, 6),
                "end": round(end, 6) if end == end else None,
                "ok": good,
                "latency": round(end - start, 6) if good else None,
                "output_tokens": self.tokens[k],
            }
            if ttft == ttft:
                row["ttft"] = round(ttft, 6)
                value = tpot(end - start, ttft, self.tokens[k])
                row["tpot"] = None if value is None else round(value, 6)
            if index < len(self.lags):
                row["lag"] = round(self.lags[index], 6)
            if not good:
                row["error"] = self.errors.get(k)
            rows.append(row)
        return rows


# -- schedules -----------------------------------------------------------------------


def arrival_offsets(rate: float, arrival: Arrival = "constant", seed: int = 0) -> Iterator[float]:
    """Seconds from the first start to each start, forever: ``i / rate`` (constant),
    or a Poisson process (exponential gaps of mean ``1 / rate``, seeded). Both start
    at 0."""
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError(f"rate must be a positive number, got {rate}")
    if arrival == "constant":
        i = 0
        while True:
            yield i / rate
            i += 1
    elif arrival == "poisson":
        rng = random.Random(seed)
        t = 0.0
        while True:
            yield t
            t += rng.expovariate(rate)
    else:
        raise ValueError(f"arrival must be one of {', '.join(ARRIVALS)}, got {arrival!r}")


async def paced(
    items: Iterable[T],
    offsets: Iterator[float],
    recorder: Recorder,
    *,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    until: float | None = None,
) -> AsyncIterator[T]:
    """Hand out ``items`` no earlier than their offsets from the first pull, stamping
    each start and how late it was (a pull after the slot: the consumer was busy);
    stop at the first offset past ``until``."""
    clock = recorder.clock
    first: float | None = None
    for item, offset in zip(items, offsets, strict=False):  # offsets never end
        if until is not None and offset >= until:
            return
        if first is None:
            first = clock()
        due = first + offset
        wait = due - clock()
        if wait > 0:
            await sleep(wait)
        recorder.started(lag=max(0.0, clock() - due))
        yield item


def _stamped(items: Iterable[T], recorder: Recorder, until: float | None) -> Iterator[T]:
    """Stamp each start as a worker pulls it; none after ``until`` seconds."""
    if until is None:
        for item in items:
            recorder.started()
            yield item
        return
    for item in items:
        if recorder.now() >= until:
            return
        recorder.started()
        yield item


# -- runs ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Load:
    """How one run sends its requests."""

    #: Closed loop: workers; open loop: the cap on requests in flight.
    concurrency: int
    #: Requests to send; ``None``: until ``duration`` runs out.
    requests: int | None = None
    #: Seconds after which no request starts (those in flight finish).
    duration: float | None = None
    #: Open loop: starts per second; ``None``: closed loop.
    rate: float | None = None
    arrival: Arrival = "constant"
    seed: int = 0
    #: The engine call: ``generate_batch`` (results recorded when it returns: the
    #: lowest overhead), ``iter_batch`` (each result recorded and dropped as it comes:
    #: memory stays bounded) or ``generate_stream`` (TTFT, TPOT, ITL).
    api: Api = "generate_batch"

    @property
    def stream(self) -> bool:
        return self.api == "generate_stream"

    @property
    def kind(self) -> str:
        return "closed" if self.rate is None else "open"

    def to_json(self) -> dict[str, Any]:
        return {
            "loop": self.kind,
            "concurrency": self.concurrency,
            "requests": self.requests,
            "duration": self.duration,
            "rate": self.rate,
            "arrival": None if self.rate is None else self.arrival,
            "seed": self.seed,
            "api": self.api,
        }


@dataclass(frozen=True, slots=True)
class Progress:
    """What a live display sees of a run in progress (see :func:`run_load`)."""

    label: str
    elapsed: float
    started: int
    finished: int
    failed: int
    metrics: MetricsSnapshot
    #: The run has ended: the last call, with its final counts.
    final: bool = False


#: Called every ``progress_interval`` seconds while a run goes, and once at its end
#: (``final``): a live display.
ProgressHook = Callable[[Progress], None]


async def run_load(
    synth: Synth,
    prompts: Iterable[Prompt],
    load: Load,
    recorder: Recorder,
    *,
    label: str = "",
    on_progress: ProgressHook | None = None,
    progress_interval: float = 0.5,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
) -> None:
    """Send ``prompts`` through the open ``synth`` as ``load`` says, into ``recorder``.

    ``load.api`` picks the engine call. The batch calls' workers are the closed loop
    (an open loop feeds them on schedule); ``generate_batch``'s results are recorded
    once it returns, so measuring costs the run one clock read per request
    (``iter_batch`` adds its hand-over to the consumer, ~12 us a request, to the CPU
    figure, but keeps no result). Streams have ``concurrency`` workers of
    :meth:`Synth.generate_stream`. With ``duration``, no request starts after it and
    those in flight finish. ``sleep`` is the pacing sleep (tests pair it with a fake
    clock in ``recorder``).
    """
    items: Iterable[Prompt] = prompts if load.requests is None else islice(prompts, load.requests)
    feed: Iterable[Prompt] | AsyncIterable[Prompt]
    if load.rate is not None:
        offsets = arrival_offsets(load.rate, load.arrival, load.seed)
        feed = paced(items, offsets, recorder, sleep=sleep, until=load.duration)
    else:
        feed = _stamped(items, recorder, until=load.duration)
    results: list[Result] = []
    try:
        async with anyio.create_task_group() as tg:
            if on_progress is not None:
                tg.start_soon(
                    _report_progress, synth, recorder, label, on_progress, progress_interval
                )
            recorder.t0 = recorder.clock()
            recorder.window = load.duration
            cpu0 = time.process_time()
            if load.api == "generate_stream":
                await _streams(synth, feed, load.concurrency, recorder)
            elif load.api == "iter_batch":
                async with synth.iter_batch(feed) as stream:
                    async for index, result in stream:
                        _record(recorder, index, result)
            else:
                results = await synth.generate_batch(feed)
            recorder.wall = recorder.now()
            recorder.cpu = time.process_time() - cpu0
            tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise single_error(group) from None  # "every key rejected", not a group around it
    for index, result in enumerate(results):
        _record(recorder, index, result, ended=False)
    if on_progress is not None:
        _progress(synth, recorder, label, on_progress, final=True)


def _record(recorder: Recorder, index: int, result: Result, *, ended: bool = True) -> None:
    """``ended``: the result just came, so a failure's end is now."""
    if isinstance(result, Completion):
        # the engine's own latency, from the same start
        end = recorder.starts[index] + result.latency
        recorder.succeeded(index, end, result.usage.output_tokens, cached=result.cached)
    else:
        recorder.failed(index, recorder.now() if ended else None, type(result.error).__name__)


async def _streams(
    synth: Synth,
    feed: Iterable[Prompt] | AsyncIterable[Prompt],
    concurrency: int,
    recorder: Recorder,
) -> None:
    inputs: InputFeed[Prompt] = InputFeed(feed)

    async def worker() -> None:
        while (pulled := await inputs.next()) is not None:
            await _one_stream(synth, *pulled, recorder)

    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)


async def _one_stream(synth: Synth, index: int, prompt: Prompt, recorder: Recorder) -> None:
    now = recorder.now
    chunks: list[float] = []
    completion: Completion | None = None
    try:
        async with synth.generate_stream(prompt) as stream:
            async for event in stream:
                if isinstance(event, TextDelta):
                    if event.text:
                        chunks.append(now())
                else:
                    completion = event.completion
    except ConfigurationError:
        raise  # the job cannot work at all (every key rejected): stop the bench
    except Exception as exc:
        recorder.failed(index, now(), type(exc).__name__)
        return
    end = now()
    tokens = 0 if completion is None else completion.usage.output_tokens
    recorder.succeeded(index, end, tokens, chunks=chunks)


async def _report_progress(
    synth: Synth, recorder: Recorder, label: str, hook: ProgressHook, interval: float
) -> None:
    while True:
        await anyio.sleep(interval)
        _progress(synth, recorder, label, hook)


def _progress(
    synth: Synth, recorder: Recorder, label: str, hook: ProgressHook, *, final: bool = False
) -> None:
    metrics = synth.metrics()
    hook(
        Progress(
            label=label,
            elapsed=recorder.now(),
            started=len(recorder.starts),
            finished=metrics.succeeded + metrics.failed,
            failed=metrics.failed,
            metrics=metrics,
            final=final,
        )
    )
