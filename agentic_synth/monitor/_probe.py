"""The process as a job sees it: event-loop lag and CPU, sampled in the background.

A task that sleeps ``interval`` seconds and measures how late it wakes up is the
cheapest honest loop-lag probe (a loop busy with Python work, or blocked by a
synchronous call, wakes it late); the same tick samples process CPU time, so CPU
seconds per wall second over the last 10 s say whether the client is CPU-bound.
Wall time on purpose: lag is a real-time property, whatever clock the engine uses.
"""

from __future__ import annotations

import time
from collections import deque

import anyio

from ._metrics import Metrics

__all__ = ["watch_process"]

#: How often the probe wakes up (4 times a second: negligible CPU).
INTERVAL = 0.25
#: The CPU figure's window.
CPU_WINDOW = 10.0


async def watch_process(metrics: Metrics, interval: float = INTERVAL) -> None:
    """Record loop lag and CPU into ``metrics`` until cancelled."""
    samples: deque[tuple[float, float]] = deque(maxlen=max(2, int(CPU_WINDOW / interval) + 1))
    samples.append((time.perf_counter(), time.process_time()))
    while True:
        before = time.perf_counter()
        await anyio.sleep(interval)
        now = time.perf_counter()
        metrics.loop_lag.record(max(0.0, now - before - interval))
        samples.append((now, time.process_time()))
        wall0, cpu0 = samples[0]
        if now > wall0:
            metrics.cpu_fraction = (samples[-1][1] - cpu0) / (now - wall0)
