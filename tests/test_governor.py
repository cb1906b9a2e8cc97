"""The memory governor: pressure, eviction by the seed's table, backpressure."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from agentic_synth import ConfigurationError
from agentic_synth._governor import MemoryGovernor, parse_size, read_rss

MB = 2**20


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512MB", 512 * 10**6),
        ("200M", 200 * 10**6),
        ("2GiB", 2 * 2**30),
        ("1.5g", 1_500_000_000),
        (4096, 4096),
        ("100 KiB", 102_400),
    ],
)
def test_sizes(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["lots", "-5MB", "0", 0, -1, "5 parsecs"])
def test_bad_sizes_name_the_form(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="512MB"):
        parse_size(bad)  # type: ignore[arg-type]


def test_rss_is_read_from_proc() -> None:
    rss = read_rss()
    assert rss is not None and 10 * MB < rss < 10_000 * MB


class Fake:
    def __init__(self) -> None:
        self.now = 0.0
        self.rss = 100 * MB
        self.evicted: list[float] = []

    def clock(self) -> float:
        return self.now

    def read(self) -> int:
        return self.rss

    def evict(self, share: float) -> int:
        self.evicted.append(share)
        return 1000


def governor(fake: Fake, limit_mb: int = 1000, workers: int = 8) -> MemoryGovernor:
    g = MemoryGovernor(
        limit_mb * MB,
        max_in_progress=workers,
        clock=fake.clock,
        rss=fake.read,
        interval=0.05,
        evict_interval=1.0,
    )
    g.add_evictor(fake.evict)
    return g


@pytest.mark.parametrize(
    ("rss_mb", "share"), [(500, None), (650, 0.1), (800, 0.2), (900, 0.3), (970, 0.5)]
)
async def test_eviction_follows_the_seed_table(rss_mb: int, share: float | None) -> None:
    fake = Fake()
    g = governor(fake)
    fake.rss = rss_mb * MB
    fake.now = 1.0
    await g.acquire()
    assert fake.evicted == ([] if share is None else [share])
    assert g.snapshot()["pressure"] == pytest.approx(rss_mb / 1000)


async def test_eviction_waits_for_freed_memory_to_show() -> None:
    fake = Fake()
    g = governor(fake)
    fake.rss = 700 * MB
    for step in range(10):  # 10 admissions within one second
        fake.now = 1.0 + step * 0.06
        await g.acquire()
        g.release()
    assert len(fake.evicted) == 1


async def test_hard_pressure_lets_fewer_inputs_in_and_never_deadlocks() -> None:
    fake = Fake()
    g = governor(fake, workers=8)
    for _ in range(8):
        await g.acquire()
    fake.rss = 950 * MB
    fake.now = 1.0
    g.release()
    entered = 0

    async def one() -> None:
        nonlocal entered
        await g.acquire()
        entered += 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(one)
        await anyio.wait_all_tasks_blocked()
        assert g.allowed == 4 and entered == 0  # 7 in progress, 4 allowed: held back
        for _ in range(3):
            g.release()
        await anyio.wait_all_tasks_blocked()
        assert entered == 0  # 4 in progress, still at the allowance
        g.release()  # 3 in progress: room
    assert entered == 1
    # pressure falls: the allowance grows back, never above the workers
    fake.rss = 300 * MB
    for step in range(20):
        fake.now = 2.0 + step * 0.1
        await g.acquire()
        g.release()
    assert g.allowed == 8


async def test_at_least_one_input_always_proceeds() -> None:
    fake = Fake()
    g = governor(fake, workers=4)
    fake.rss = 5000 * MB  # far over the limit
    for step in range(10):
        fake.now = step * 0.1
        await g.acquire()  # in progress is 0 each time: never held
        g.release()
    assert g.allowed == 1


async def test_optimize_evicts_collects_and_reports() -> None:
    fake = Fake()
    g = governor(fake)
    done = g.optimize()
    assert fake.evicted == [0.5]
    assert {"evicted_bytes", "gc_objects", "malloc_trim", "rss_before", "rss_after"} <= set(done)


def test_a_job_with_1gb_of_cacheable_answers_stays_within_its_limit() -> None:
    """The issue's proof: a 200 MB limit and 1 GB of cacheable answers; peak RSS within
    the limit + 10% (without the limit the same job peaks near 1 GB)."""
    import subprocess
    import sys
    from pathlib import Path

    job = Path(__file__).with_name("governed_job.py")

    def peak(limit: str) -> float:
        ran = subprocess.run(
            [sys.executable, str(job), limit],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert ran.returncode == 0, ran.stderr
        peak_mb = float(ran.stdout.split()[0])
        if limit != "none":
            assert peak_mb <= 220, ran.stderr  # what the governor did, when it failed
        return peak_mb

    peak("200")
    assert peak("none") > 500  # the limit is what kept it down
