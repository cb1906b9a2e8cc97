"""Local time series and event streams: records/s against plain dict generation.

Work measured: ``generate_timeseries_local`` (``--n`` points x 3 metrics, trend,
daily seasonality and noise) and ``generate_events_local`` (``--n`` events for each
distribution, with the seed-style metadata and without), plus the validators on
their output. Baselines in the same run: the same number of plain dicts holding
``random.random()`` values (3 for the series, 4 for events: the floor any Python
generator of dicts pays), and the same dicts with an ISO timestamp from
``datetime.isoformat`` (what a hand-written loop would minimally do). Each figure
is the best of ``--repeat`` runs (CPU time of this process).

    python benchmarks/bench_local_generators.py            # 100k records, ~10 s
    python benchmarks/bench_local_generators.py --n 1000000
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from _report import save, table, timed

from agentic_synth.datasets._events import check_events, generate_events_local
from agentic_synth.datasets._timeseries import check_timeseries, generate_timeseries_local

START = "2026-01-01T00:00:00Z"
DAY = ("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z")
METRICS = ["cpu", "memory", "latency"]


def best(fn: Callable[[], Any], repeat: int) -> float:
    """Lowest CPU seconds of ``repeat`` runs (the result is dropped inside the timing,
    so freeing it is part of every run alike)."""
    times = []
    for _ in range(repeat):
        with timed() as t:
            fn()
        times.append(t.cpu)
    return min(times)


def plain_dicts(n: int, fields: int) -> list[dict[str, Any]]:
    r = random.Random(0).random
    if fields == 3:
        return [{"timestamp": i, "a": r(), "b": r(), "c": r()} for i in range(n)]
    return [{"id": i, "a": r(), "b": r(), "c": r(), "d": r()} for i in range(n)]


def plain_dicts_iso(n: int, fields: int) -> list[dict[str, Any]]:
    r = random.Random(0).random
    when, step = datetime(2026, 1, 1), timedelta(hours=1)
    out = []
    for _ in range(n):
        ts = when.isoformat(timespec="seconds") + "Z"
        if fields == 3:
            out.append({"timestamp": ts, "a": r(), "b": r(), "c": r()})
        else:
            out.append({"timestamp": ts, "a": r(), "b": r(), "c": r(), "d": r()})
        when += step
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n, repeat = args.n, args.repeat

    def rate(seconds: float) -> float:
        return n / seconds

    rows: list[dict[str, Any]] = []

    def row(name: str, seconds: float, baseline: float, iso_baseline: float) -> None:
        rows.append(
            {
                "work": name,
                "records/s": rate(seconds),
                "us/record": seconds / n * 1e6,
                "x plain dicts": seconds / baseline,
                "x dicts+iso": seconds / iso_baseline,
            }
        )

    base3 = best(lambda: plain_dicts(n, 3), repeat)
    iso3 = best(lambda: plain_dicts_iso(n, 3), repeat)
    base4 = best(lambda: plain_dicts(n, 4), repeat)
    iso4 = best(lambda: plain_dicts_iso(n, 4), repeat)
    row("baseline: dicts of 3 random()", base3, base3, iso3)
    row("baseline: + isoformat timestamp", iso3, base3, iso3)

    def series() -> list[dict[str, Any]]:
        return generate_timeseries_local(
            n, START, metrics=METRICS, trend="up", noise=0.1, seed=1, interval="1m"
        )

    row("timeseries 3 metrics", best(series, repeat), base3, iso3)
    row(
        "timeseries 3 metrics, random walk",
        best(
            lambda: generate_timeseries_local(
                n, START, metrics=METRICS, trend="random", seed=1, interval="1m"
            ),
            repeat,
        ),
        base3,
        iso3,
    )
    points = series()
    row(
        "check_timeseries",
        best(lambda: check_timeseries(points, count=n, interval="1m", metrics=METRICS), repeat),
        base3,
        iso3,
    )

    row("baseline: dicts of 4 random()", base4, base4, iso4)
    row("baseline: + isoformat timestamp", iso4, base4, iso4)
    for distribution in ("uniform", "poisson", "normal"):
        for metadata in (True, False):
            row(
                f"events {distribution}{'' if metadata else ', no metadata'}",
                best(
                    lambda d=distribution, m=metadata: generate_events_local(  # type: ignore[misc]
                        n, distribution=d, time_range=DAY, metadata=m, seed=1
                    ),
                    repeat,
                ),
                base4,
                iso4,
            )
    stream = generate_events_local(n, distribution="poisson", time_range=DAY, seed=1)
    row(
        "check_events",
        best(lambda: check_events(stream, count=n, users=50, time_range=DAY), repeat),
        base4,
        iso4,
    )

    columns = ["work", "records/s", "us/record", "x plain dicts", "x dicts+iso"]
    print(f"n = {n:,} records, best of {repeat} (CPU time)\n")
    print(table(rows, columns))
    path = save("local_generators", {"n": n, "repeat": repeat, "rows": rows})
    print(f"\nsaved {path}")


if __name__ == "__main__":
    main()
