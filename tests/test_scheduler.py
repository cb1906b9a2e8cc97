from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import anyio
import anyio.lowlevel
import pytest

from agentic_synth._scheduler import InputFeed, run_workers


async def test_lazy_consumption_is_bounded_by_concurrency() -> None:
    pulled = 0
    in_flight = peak = 0

    def gen() -> Iterator[int]:
        nonlocal pulled
        for i in range(1_000_000):
            pulled += 1
            yield i

    feed: InputFeed[int] = InputFeed(gen())
    seen: list[int] = []

    async def process(index: int, item: int) -> int:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await anyio.lowlevel.checkpoint()
        in_flight -= 1
        return item

    def emit(index: int, result: int) -> None:
        seen.append(index)
        if len(seen) == 50:
            raise _Stop

    with pytest.raises(_Stop):
        await run_workers(feed, process, emit, concurrency=8)
    assert peak <= 8
    # the generator was pulled only a little beyond what was processed
    assert pulled <= 50 + 2 * 8  # each worker holds one input, plus one pulled as it is cancelled


class _Stop(Exception):
    pass


async def test_async_iterable_input_and_indices() -> None:
    async def agen() -> AsyncIterator[str]:
        for i in range(100):
            await anyio.lowlevel.checkpoint()
            yield f"p{i}"

    out: dict[int, str] = {}

    async def process(index: int, item: str) -> str:
        await anyio.lowlevel.checkpoint()
        return item.upper()

    def emit(index: int, result: str) -> None:
        out[index] = result

    await run_workers(InputFeed(agen()), process, emit, concurrency=7)
    assert out == {i: f"P{i}" for i in range(100)}


async def test_iterator_failure_propagates_unwrapped() -> None:
    def bad() -> Iterator[int]:
        yield 1
        raise KeyError("broken input")

    async def process(index: int, item: int) -> int:
        return item

    with pytest.raises(KeyError, match="broken input"):
        await run_workers(InputFeed(bad()), process, lambda i, r: None, concurrency=4)


def test_single_string_is_rejected() -> None:
    with pytest.raises(TypeError, match="single string"):
        InputFeed("hello")
    with pytest.raises(TypeError, match="iterable"):
        InputFeed(42)  # type: ignore[arg-type]


class _Timings:
    """Metrics as the scheduler sees them, on a clock the test moves."""

    detailed = True

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: dict[str, float] = {}

    @property
    def clock(self) -> Callable[[], float]:
        return lambda: self.now

    def waited(self, stage: str, seconds: float) -> None:
        self.waits[stage] = self.waits.get(stage, 0.0) + seconds


async def test_workers_report_input_and_output_waits() -> None:
    """A slow input iterator shows as ``input`` time, a slow consumer as ``output``."""
    timings = _Timings()

    async def slow_input() -> AsyncIterator[int]:
        for i in range(10):
            timings.now += 2.0  # each input takes 2 s to produce
            await anyio.lowlevel.checkpoint()
            yield i

    async def process(index: int, item: int) -> int:
        return item

    async def emit(index: int, result: int) -> None:
        timings.now += 0.5  # the consumer takes 0.5 s per result
        await anyio.lowlevel.checkpoint()

    await run_workers(InputFeed(slow_input()), process, emit, concurrency=1, timings=timings)
    assert timings.waits["input"] == pytest.approx(10 * 2.0 + 2.0 * 0)  # 10 items, then the end
    assert timings.waits["output"] == pytest.approx(10 * 0.5)


async def test_no_timings_when_monitoring_is_off() -> None:
    timings = _Timings()
    timings.detailed = False

    async def process(index: int, item: int) -> int:
        return item

    await run_workers(
        InputFeed(range(5)), process, lambda i, r: None, concurrency=2, timings=timings
    )
    assert timings.waits == {}
