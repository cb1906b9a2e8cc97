"""Dataset sinks: rows/s of each format against plain ``json.dumps`` to a file, and
peak memory of writing 1M rows to Parquet.

Work measured: a realistic 12-column record (ints, floats, a boolean, strings, an
RFC 3339 timestamp, a list, a nested object, a ~200-character text and two
attribute columns) written to a file on local disk, typed by its JSON Schema.
Every figure is against baselines measured in the same run:

- ``json.dumps`` + ``f.write`` to a buffered file: the least a JSONL writer can do
  (no per-row system call, so nothing is on disk until the buffer fills);
- ``csv.DictWriter`` to a buffered file, for CSV;
- ``pyarrow.Table.from_pylist`` + ``pq.write_table`` of the whole dataset at once,
  for Parquet (what "buffer everything, write at the end" costs).

Memory: a child process generates rows on the fly and writes them to Parquet;
its peak RSS (VmHWM) is reported for 100k and 1M rows, and for the same child
generating rows without writing them. Flat means the 1M figure is the 100k one.

    python benchmarks/bench_sinks.py                 # ~1 minute
    python benchmarks/bench_sinks.py --rows 50000    # quicker
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import random
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from _report import save, table, timed

from agentic_synth.datasets._sinks import open_sink

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": "string"},
        "email": {"type": "string"},
        "age": {"type": "integer"},
        "score": {"type": "number"},
        "active": {"type": "boolean"},
        "created_at": {"type": "string", "format": "date-time"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "address": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "zip": {"type": "string"},
                "country": {"type": "string"},
            },
            "required": ["city", "country"],
        },
        "bio": {"type": "string"},
    },
    "required": ["id", "name", "email", "age", "active", "created_at"],
}
COLUMNS = [*SCHEMA["properties"], "topic", "persona"]
WORDS = "data model user city river quick brown fox jumps over lazy dog synthetic record".split()


def make_row(i: int, rng: random.Random) -> dict[str, Any]:
    first = rng.choice(["Ann", "Bob", "Chloé", "Dev", "Eli", "Fatima", "Gus", "Hana"])
    return {
        "id": i,
        "name": f"{first} {rng.choice(WORDS).title()}son",
        "email": f"{first.lower()}.{i}@example.com",
        "age": rng.randint(18, 90),
        "score": rng.random() * 100,
        "active": rng.random() < 0.5,
        "created_at": f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T"
        f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z",
        "tags": rng.sample(WORDS, rng.randint(0, 4)),
        "address": {
            "city": rng.choice(["Paris", "Lyon", "Oslo"]),
            "zip": f"{rng.randint(10000, 99999)}",
            "country": "FR",
        },
        "bio": " ".join(rng.choices(WORDS, k=30))[:200],
        "topic": rng.choice(["sports", "finance", "travel"]),
        "persona": rng.choice(["student", "engineer", "retiree"]),
    }


def rows_stream(n: int, seed: int = 0) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    for i in range(n):
        yield make_row(i, rng)


# --------------------------------------------------------------------------- writers


def baseline_json(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def baseline_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow(row)  # nested values as Python repr: less work than JSON


def baseline_arrow(rows: list[dict[str, Any]], path: Path) -> None:
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    from agentic_synth.datasets._sinks import arrow_schema

    schema = arrow_schema(COLUMNS, SCHEMA)
    fixed = [
        {**r, "created_at": __import__("datetime").datetime.fromisoformat(r["created_at"])}
        for r in rows
    ]
    pq.write_table(pa.Table.from_pylist(fixed, schema=schema), path)


def sink_rows(
    suffix: str, per_row: bool, **kw: Any
) -> Callable[[list[dict[str, Any]], Path], None]:
    def run(rows: list[dict[str, Any]], path: Path) -> None:
        with open_sink(path.with_suffix(suffix), COLUMNS, schema=SCHEMA, **kw) as sink:
            if per_row:
                for row in rows:
                    sink.write(row)
            else:
                sink.write_many(rows)

    return run


CASES: list[tuple[str, str, Callable[[list[dict[str, Any]], Path], None]]] = [
    ("json.dumps + buffered write (baseline)", ".jsonl", baseline_json),
    ("JSONL sink, write() per row", ".jsonl", sink_rows(".jsonl", True)),
    ("JSONL sink, write_many()", ".jsonl", sink_rows(".jsonl", False)),
    ("csv.DictWriter + buffered write", ".csv", baseline_csv),
    ("CSV sink, write() per row", ".csv", sink_rows(".csv", True)),
    ("CSV sink, write_many()", ".csv", sink_rows(".csv", False)),
    ("pyarrow from_pylist + write_table, all at once", ".parquet", baseline_arrow),
    (
        "Parquet sink, write(), groups of 1,000",
        ".parquet",
        sink_rows(".parquet", True, row_group_size=1000),
    ),
    (
        "Parquet sink, write(), groups of 10,000",
        ".parquet",
        sink_rows(".parquet", True, row_group_size=10_000),
    ),
    (
        "Parquet sink, write(), groups of 50,000",
        ".parquet",
        sink_rows(".parquet", True, row_group_size=50_000),
    ),
]


def throughput(n: int, repeats: int) -> list[dict[str, Any]]:
    rows = list(rows_stream(n))
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        best: dict[str, tuple[float, float, int]] = {}
        for _ in range(repeats):  # interleaved repeats, best of each
            for name, suffix, fn in CASES:
                path = Path(tmp) / f"out{suffix}"
                gc.collect()
                with timed() as t:
                    fn(rows, path)
                size = path.stat().st_size
                path.unlink()
                prev = best.get(name)
                if prev is None or t.wall < prev[0]:
                    best[name] = (t.wall, t.cpu, size)
    base = n / best[CASES[0][0]][0]
    for name, _, _ in CASES:
        wall, cpu, size = best[name]
        results.append(
            {
                "writer": name,
                "rows/s": n / wall,
                "cpu us/row": cpu / n * 1e6,
                "vs json.dumps": (n / wall) / base,
                "MiB": size / 2**20,
            }
        )
    return results


# --------------------------------------------------------------------------- memory


def peak_rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def child(rows: int, group: int, write: bool) -> None:
    """Generate ``rows`` rows on the fly and (``write``) send them to a Parquet sink."""
    import pyarrow.parquet  # noqa: F401  (loaded either way: both runs carry the library)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.parquet"
        if write:
            with open_sink(path, COLUMNS, schema=SCHEMA, row_group_size=group) as sink:
                for row in rows_stream(rows):
                    sink.write(row)
            size = path.stat().st_size
        else:
            for _ in rows_stream(rows):
                pass
            size = 0
        print(json.dumps({"peak_rss_mib": peak_rss_kib() / 1024, "file_mib": size / 2**20}))


def _child_run(rows: int, group: int, write: bool) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", str(rows), "--group", str(group)]
    if not write:
        cmd.append("--no-write")
    with timed() as t:
        got = json.loads(subprocess.run(cmd, check=True, capture_output=True).stdout)
    return {
        "rows": rows,
        "what": f"Parquet sink, groups of {group:,}" if write else "rows generated only",
        "peak RSS MiB": got["peak_rss_mib"],
        "file MiB": got["file_mib"],
        "rows/s": rows / t.wall if write else "",
    }


def memory(groups: list[int], sizes: list[int]) -> list[dict[str, Any]]:
    out = []
    for rows in sizes:
        out.append(_child_run(rows, 0, write=False))
        out += [_child_run(rows, group, write=True) for group in groups]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows per throughput run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-rows", type=int, default=1_000_000)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--group", type=int, default=10_000, help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.group, not args.no_write)
        return
    speed = throughput(args.rows, args.repeats)
    print(f"\n{args.rows:,} rows of 12 columns, best of {args.repeats} (same run)\n")
    print(table(speed, ["writer", "rows/s", "cpu us/row", "vs json.dumps", "MiB"]))
    mem = memory([1000, 10_000], [args.memory_rows // 10, args.memory_rows])
    print("\nPeak RSS of a child process writing rows generated on the fly\n")
    print(table(mem, ["rows", "what", "peak RSS MiB", "file MiB", "rows/s"]))
    path = save(
        "sinks", {"rows": args.rows, "throughput": speed, "memory": mem, "cpus": os.cpu_count()}
    )
    print(f"\nsaved {path}")


if __name__ == "__main__":
    main()
