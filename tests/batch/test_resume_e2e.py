"""The proof of resume: a batch job on the official anthropic SDK against the mock
server (its own process) is killed with SIGKILL right after its batch ids are
written, then run again. The server sees one creation per batch, every input is
answered exactly once, and the cost is at the batch price."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from agentic_synth import ModelSpec
from agentic_synth._pricing import prices_for
from agentic_synth.simulator import SimConfig
from agentic_synth.simulator._serve import spawn_mock_server

N = 30
PER_BATCH = 10

JOB = """
import json, sys
import anyio
from agentic_synth import ModelSpec, Synth
from agentic_synth.providers._batch import BatchLimits

url, state, out = sys.argv[1:4]
PER_BATCH, N = int(sys.argv[4]), int(sys.argv[5])

async def main():
    spec = ModelSpec("anthropic", "mock", base_url=url, api_key="sk-ant-test-key-123456",
                     input_price=1e-6, output_price=4e-6)
    async with Synth([spec]) as synth:
        synth._deployments[0][1].batch_backend().limits = BatchLimits(PER_BATCH, 10**9)
        results = await synth.generate_batch(
            [f"Question {i}?" for i in range(N)], max_tokens=12, mode="batch",
            batch_state=state, batch_poll_interval=0.05,
        )
    with open(out, "w") as f:
        for r in results:
            f.write(json.dumps({"index": r.index, "ok": r.ok, "text": getattr(r, "text", None),
                "batch_id": getattr(r, "batch_id", None), "cost": getattr(r, "cost", None),
                "cached": getattr(r, "cached", None), "attempts": r.attempts,
                "usage": [r.usage.input_tokens, r.usage.output_tokens] if r.ok else None}) + "\\n")

anyio.run(main)
"""


def submitted_ids(state: Path) -> list[str]:
    if not state.exists():
        return []
    db = sqlite3.connect(state, timeout=10)
    try:
        return [r[0] for r in db.execute("SELECT batch_id FROM batches WHERE batch_id IS NOT NULL")]
    except sqlite3.OperationalError:  # the schema is not there yet
        return []
    finally:
        db.close()


def server_stats(url: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{url}/_sim/stats", timeout=10) as response:
        stats: dict[str, int] = json.load(response)
    return stats


def test_killed_after_submission_and_restarted_reattaches(tmp_path: Path) -> None:
    state, out = tmp_path / "state.sqlite", tmp_path / "out.jsonl"
    script = tmp_path / "job.py"
    script.write_text(JOB)
    # long enough that the first run is killed while every batch is still processing
    config = SimConfig(seed=3, batch_processing_time=2.0)
    with spawn_mock_server(config) as url:
        child = subprocess.Popen(
            [sys.executable, str(script), url, str(state), str(out), str(PER_BATCH), str(N)]
        )
        try:
            deadline = time.monotonic() + 60
            while len(submitted_ids(state)) < N // PER_BATCH:
                assert child.poll() is None, "the job ended before it was killed"
                assert time.monotonic() < deadline, "the batches were never submitted"
                time.sleep(0.01)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
        assert not out.exists()
        first_ids = submitted_ids(state)
        assert server_stats(url)["batches_created"] == N // PER_BATCH
        # restart: the same job finds its batches and collects them
        command = [sys.executable, str(script), url, str(state), str(out), str(PER_BATCH), str(N)]
        again = subprocess.run(command, timeout=120, check=False, capture_output=True, text=True)
        assert again.returncode == 0, again.stderr
        assert server_stats(url)["batches_created"] == N // PER_BATCH  # none paid twice
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["index"] for r in rows] == list(range(N))
    assert all(r["ok"] and r["text"] and not r["cached"] and r["attempts"] == 1 for r in rows)
    assert sorted({r["batch_id"] for r in rows}) == sorted(first_ids)
    db = sqlite3.connect(state)
    outcomes = db.execute("SELECT outcome, COUNT(*) FROM items GROUP BY outcome").fetchall()
    statuses = db.execute("SELECT status, COUNT(*) FROM batches GROUP BY status").fetchall()
    (lock,) = db.execute("SELECT lock_pid FROM jobs").fetchone()
    db.close()
    assert outcomes == [("succeeded", N)] and statuses == [("collected", N // PER_BATCH)]
    assert lock is None
    for file in tmp_path.glob("state.sqlite*"):  # the database and its write-ahead log
        assert b"sk-ant-test" not in file.read_bytes()
    # the batch discount: every result at half the online price of its usage
    prices = prices_for(ModelSpec("anthropic", "mock", input_price=1e-6, output_price=4e-6))
    assert prices is not None
    for r in rows:
        online = r["usage"][0] * 1e-6 + r["usage"][1] * 4e-6
        assert abs(r["cost"] - online / 2) < 1e-15
