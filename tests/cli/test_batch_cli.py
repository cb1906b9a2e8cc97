"""``synth generate --mode batch`` and ``synth batch status|collect|cancel``, as users run them."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from cli_helpers import SYNTH, Runner, one_line_error, read_rows

from agentic_synth.simulator import SimConfig
from agentic_synth.simulator._serve import spawn_mock_server

FAST = ("--batch-state", "s.sqlite", "--poll-interval", "0.01", "--max-tokens", "8", "--no-config")


def job_ids(synth: Runner) -> list[str]:
    proc = synth("batch", "status", "--batch-state", "s.sqlite", "--json")
    assert proc.returncode == 0, proc.stderr
    return [job["job_id"] for job in json.loads(proc.stdout)]


def test_generate_in_batch_mode_writes_the_rows_online_mode_writes(
    synth: Runner, tmp_path: Path
) -> None:
    lines = [json.dumps({"prompt": f"q{i}", "id": f"x{i}", "topic": "t"}) for i in range(6)]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    batch = synth("generate", "-i", "in.jsonl", "-o", "batch.jsonl", "--mode", "batch", *FAST)
    assert batch.returncode == 0, batch.stderr
    online = synth(
        "generate", "-i", "in.jsonl", "-o", "online.jsonl", "--max-tokens", "8", "--no-config"
    )
    assert online.returncode == 0, online.stderr
    b, o = read_rows(tmp_path / "batch.jsonl"), read_rows(tmp_path / "online.jsonl")
    assert [list(r) for r in b] == [list(r) for r in o]  # the same keys, in the same order
    o.sort(key=lambda r: r["index"])
    same = (
        "index",
        "id",
        "prompt",
        "topic",
        "ok",
        "text",
        "model",
        "finish_reason",
        "output_tokens",
    )
    assert [[r[k] for k in same] for r in b] == [[r[k] for k in same] for r in o]
    (job,) = job_ids(synth)
    assert f"batch job {job}: 6 inputs, 0 already answered" in batch.stderr
    assert "cost $" in batch.stderr and "at batch prices" in batch.stderr
    # the same command again: everything replayed from the state, nothing submitted
    again = synth("generate", "-i", "in.jsonl", "-o", "again.jsonl", "--mode", "batch", *FAST)
    assert again.returncode == 0, again.stderr
    assert "6 already answered" in again.stderr and "batches: 0 in 0 round(s)" in again.stderr
    assert [r["text"] for r in read_rows(tmp_path / "again.jsonl")] == [r["text"] for r in b]


def test_status_and_collect_read_the_state(synth: Runner, tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text('{"prompt": "a", "id": 1}\n{"prompt": ""}\nplain text\n')
    assert (
        synth("generate", "-i", "in.jsonl", "-o", "out.jsonl", "--mode", "batch", *FAST).returncode
        == 0
    )
    (job,) = job_ids(synth)
    status = synth("batch", "status", "--batch-state", "s.sqlite")
    assert status.returncode == 0, status.stderr
    first, batch_line = status.stdout.splitlines()
    assert first.startswith(f"{job}  done  sim:sim-1  3 inputs: 2 succeeded, 1 failed")
    assert "round 1  collected  2 items" in batch_line
    one = synth("batch", "status", job, "--batch-state", "s.sqlite")
    assert one.stdout == status.stdout
    collect = synth("batch", "collect", job, "--batch-state", "s.sqlite", "-o", "collected.jsonl")
    assert collect.returncode == 0, collect.stderr
    assert f"batch job {job}: wrote 3 rows (2 succeeded, 1 failed)" in collect.stderr
    written = read_rows(tmp_path / "out.jsonl")
    collected = read_rows(tmp_path / "collected.jsonl")
    assert [(r["index"], r["id"], r["prompt"], r["ok"], r["text"]) for r in collected] == [
        (r["index"], r["id"], r["prompt"], r["ok"], r["text"]) for r in written
    ]
    assert collected[1]["error_type"] == "InvalidRequestError"
    cancel = synth("batch", "cancel", job, "--batch-state", "s.sqlite")
    assert (
        cancel.returncode == 0
        and "is done: every input is answered, nothing to cancel" in cancel.stderr
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["generate", "--mode", "batch", "--dedup-prompts", "0.8"],
            "--dedup-prompts works with --mode online only",
        ),
        (
            ["generate", "--batch-state", "s.sqlite"],
            "--batch-state applies to --mode batch; add --mode batch",
        ),
        (
            ["generate", "--mode", "batch", "--poll-interval", "0"],
            "--poll-interval must be > 0, got 0",
        ),
        (
            ["generate", "--mode", "batch", "--batch-state", "nodir/s.sqlite"],
            "--batch-state nodir/s.sqlite: directory",
        ),
        (["generate", "--mode", "bulk"], "argument --mode: invalid choice: 'bulk'"),
        (
            ["batch", "status", "job-nope", "--batch-state", "s.sqlite"],
            "no batch job job-nope in the state file",
        ),
        (["batch", "collect", "job-nope", "--batch-state", "s.sqlite"], "no batch job job-nope in"),
        (
            ["batch", "cancel", "job-nope", "--batch-state", "s.sqlite", "--wait", "-1"],
            "--wait must be >= 0, got -1",
        ),
    ],
)
def test_mistakes_are_one_line_naming_the_flag(
    synth: Runner, tmp_path: Path, args: list[str], expected: str
) -> None:
    proc = synth(*args, "-o", "out.jsonl") if args[0] == "generate" else synth(*args)
    assert proc.returncode == 2
    assert expected in one_line_error(proc.stderr)
    assert not (tmp_path / "out.jsonl").exists()


def test_a_simulator_job_cannot_be_collected_from_another_process(
    synth: Runner, tmp_path: Path
) -> None:
    """The simulator's batches live in the process that ran the job: said plainly."""
    run = synth("generate", "-n", "3", "-o", "o.jsonl", "--mode", "batch", *FAST)
    assert run.returncode == 0, run.stderr
    (job,) = job_ids(synth)
    import sqlite3

    db = sqlite3.connect(tmp_path / "s.sqlite")  # as if the run had been killed while polling
    db.execute("UPDATE batches SET status='running'")
    db.execute("UPDATE items SET outcome='submitted', result=NULL")
    db.commit()
    db.close()
    proc = synth("batch", "collect", job, "--batch-state", "s.sqlite")
    assert proc.returncode == 2
    assert (
        "ran on the simulator (sim:sim-1), whose batches live inside the process"
        in one_line_error(proc.stderr)
    )


def test_cancel_and_collect_over_the_wire(tmp_path: Path) -> None:
    """Against the mock server (the official anthropic SDK): a job left running is
    canceled by synth batch cancel, which keeps what finished; collect writes it."""
    with spawn_mock_server(SimConfig(seed=1, batch_processing_time=30.0)) as url:
        env = {
            **os.environ,
            "ANTHROPIC_BASE_URL": url,
            "ANTHROPIC_API_KEY": "sk-ant-test-key-123456",
        }

        def synth(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
            return subprocess.run([*SYNTH, *args], capture_output=True, text=True, timeout=timeout,
                                  cwd=tmp_path, env=env, check=False)  # fmt: skip

        child = subprocess.Popen(
            [*SYNTH, "generate", "-n", "20", "-o", "out.jsonl", "--mode", "batch",
             "-m", "anthropic:mock", *FAST],
            cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert child.stderr is not None
            for line in child.stderr:  # wait until the batch is at the provider
                if "1 running, 20 submitted" in line:
                    break
            import time

            time.sleep(2.0)  # some of the 20 items (one each 1.5 s) are done
            child.terminate()  # the job is stopped; its batch keeps running
            child.wait(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
        (job,) = job_ids(lambda *a, **k: synth(*a))  # type: ignore[arg-type]
        cancel = synth("batch", "cancel", job, "--batch-state", "s.sqlite", "--wait", "10")
        assert cancel.returncode == 0, cancel.stderr
        assert f"batch job {job} canceled: " in cancel.stderr
        status = json.loads(synth("batch", "status", "--batch-state", "s.sqlite", "--json").stdout)[
            0
        ]
        assert status["status"] == "canceled" and status["batches"][0]["status"] == "collected"
        kept = status["outcomes"].get("succeeded", 0)
        assert kept >= 1 and kept + status["outcomes"]["canceled"] == 20
        collect = synth("batch", "collect", job, "--batch-state", "s.sqlite", "-o", "c.jsonl")
        assert collect.returncode == 0, collect.stderr
    rows = read_rows(tmp_path / "c.jsonl")
    assert len(rows) == 20 and sum(r["ok"] for r in rows) == kept
    assert {r["error_type"] for r in rows if not r["ok"]} == {"BatchItemCanceledError"}
