"""A run stopped by Ctrl-C or cancellation leaves a file that independent readers
read whole: every row that ``write`` accepted, each exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pandas as pd  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from agentic_synth.datasets import _sinks
from agentic_synth.datasets._sinks import open_sink

SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "text": {"type": "string"},
        "nested": {"type": "object", "properties": {"n": {"type": "integer"}}},
    },
    "required": ["id", "text"],
}
COLUMNS = ["id", "text", "nested", "topic"]

CHILD = textwrap.dedent(
    """
    import sys, time
    from agentic_synth.datasets._sinks import open_sink

    schema = {schema!r}
    path = sys.argv[1]
    sink = open_sink(path, {columns!r}, schema=schema, row_group_size=10)
    try:
        with sink:
            for i in range(1_000_000):
                sink.write({{"id": i, "text": "row " + str(i) + " line\\nbreak, quoted \\"x\\"",
                            "nested": {{"n": i}}, "topic": "t" + str(i % 3)}})
                print(i, flush=True)
                time.sleep(0.002)
    except KeyboardInterrupt:
        print("written", sink.rows_written, flush=True)
        sys.exit(130)
    """
).format(schema=SCHEMA, columns=COLUMNS)


def read_back(path: Path) -> list[dict[str, Any]]:
    """The file through independent readers (each format twice where it can be)."""
    if path.suffix == ".parquet":
        rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
        assert pd.read_parquet(path)["id"].tolist() == [r["id"] for r in rows]
        return rows
    if path.suffix == ".csv":
        frame = pd.read_csv(path, keep_default_na=False)
        return [{**r, "nested": json.loads(r["nested"])} for r in frame.to_dict(orient="records")]
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_sigint_mid_run_leaves_a_readable_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"out{suffix}"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    try:
        for line in child.stdout:  # 25 rows: 2 Parquet row groups plus 5 buffered rows
            if int(line) >= 24:
                break
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 130, err
    written = int(out.strip().splitlines()[-1].split()[1])
    assert written >= 25
    rows = read_back(path)
    assert [r["id"] for r in rows] == list(range(written))
    assert rows[-1]["text"] == f'row {written - 1} line\nbreak, quoted "x"'
    assert rows[-1]["nested"] == {"n": written - 1}
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left


async def test_cancellation_reaching_the_with_block_closes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cancelled.parquet"
    with anyio.CancelScope() as scope:
        with open_sink(path, COLUMNS, schema=SCHEMA, row_group_size=10) as sink:
            for i in range(1000):
                sink.write({"id": i, "text": str(i)})
                if i == 24:
                    scope.cancel()
                await anyio.lowlevel.checkpoint()  # cancelled here, inside the with block
    assert scope.cancelled_caught
    assert pq.read_table(path).column("id").to_pylist() == list(range(25))


def test_ctrl_c_while_a_row_group_is_written_writes_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C lands just as pyarrow has written a row group (a flush spends its time
    there): it is held until the buffer is emptied, so closing does not write the
    group again. (Without the hold this test fails with the group twice.)"""
    real = pq.ParquetWriter
    sent: list[int] = []

    class InterruptedWriter(real):  # type: ignore[misc, valid-type]
        def write_table(self, table: Any, *args: Any, **kwargs: Any) -> None:
            super().write_table(table, *args, **kwargs)
            if not sent:  # the group is written: the worst moment for Ctrl-C
                sent.append(table.num_rows)
                os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(pq, "ParquetWriter", InterruptedWriter)
    path = tmp_path / "once.parquet"
    with pytest.raises(KeyboardInterrupt):
        with open_sink(path, ["id"], row_group_size=5) as sink:
            for i in range(100):
                sink.write({"id": i})
    assert sent == [5]
    assert pq.read_table(path).column("id").to_pylist() == list(range(5))


def test_signals_are_held_and_delivered_after_the_block() -> None:
    reached = False
    with pytest.raises(KeyboardInterrupt):
        with _sinks._signals_held():
            os.kill(os.getpid(), signal.SIGINT)
            reached = True
    assert reached


def test_ctrl_c_while_an_appended_file_is_copied_keeps_every_old_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Appending to Parquet copies the old row groups first; Ctrl-C during the copy
    must not let a half copy replace the old file."""
    path = tmp_path / "resume.parquet"
    with open_sink(path, ["id"], row_group_size=4) as sink:
        sink.write_many({"id": i} for i in range(12))  # 3 row groups
    real = pq.ParquetFile.read_row_group
    sent: list[int] = []

    def interrupted(self: Any, i: int, *args: Any, **kwargs: Any) -> Any:
        if not sent:
            sent.append(i)
            os.kill(os.getpid(), signal.SIGINT)
        return real(self, i, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", interrupted)
    with pytest.raises(KeyboardInterrupt):
        with open_sink(path, ["id"], append=True, row_group_size=1) as sink:
            for i in range(12, 100):
                sink.write({"id": i})
    assert sent == [0]
    assert pq.read_table(path).column("id").to_pylist() == list(range(13))
