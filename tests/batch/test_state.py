"""The state file: what it keeps across processes, the lock, and where it lives."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentic_synth import ConfigurationError
from agentic_synth.batch import BatchJobBusyError, default_state_path
from agentic_synth.batch._state import ItemUpdate, StateStore


def new_job(store: StateStore, job: str = "job-1", n: int = 4) -> None:
    assert store.begin_job(
        job,
        models=["sim:sim-1"],
        model="sim:sim-1",
        provider="sim",
        deployment="",
        custom_ids=[f"i{i}" for i in range(n)],
        labels=[{"id": i} for i in range(n)],
        now=100.0,
    )


def test_a_batch_id_and_results_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    store = StateStore(path)
    new_job(store)
    seq = store.add_intent(
        "job-1",
        indices=[0, 1, 2],
        round=1,
        provider="sim",
        deployment="",
        model="sim:sim-1",
        now=1.0,
    )
    store.set_submitted(seq, "batch_abc", 2.0)
    store.record("job-1", [ItemUpdate(0, "succeeded", b"result", 1.5, 0.25)])
    store.record(
        "job-1", [ItemUpdate(1, "failed", error_type="ServerError", error="boom", status=500)]
    )
    store.close()

    again = StateStore(path)
    assert not again.begin_job(
        "job-1", models=["sim:sim-1"], model="sim:sim-1", provider="sim", deployment="",
        custom_ids=[f"i{i}" for i in range(4)], labels=None, now=200.0,
    )  # fmt: skip
    (batch,) = again.batches("job-1")
    assert (batch.batch_id, batch.status, batch.items, batch.submitted_at) == (
        "batch_abc",
        "running",
        3,
        2.0,
    )
    items = again.items("job-1")
    assert [(i.outcome, i.attempts, i.seq) for i in items] == [
        ("succeeded", 1, seq), ("failed", 1, seq), ("submitted", 1, seq), ("pending", 0, None),
    ]  # fmt: skip
    assert items[0].result == b"result" and items[0].cost == 0.25
    assert items[1].error_type == "ServerError" and items[1].status == 500
    assert items[3].label == {"id": 3}
    assert again.batch_items("job-1", seq) == [2]
    (job,) = again.jobs()
    assert job.outcomes == {"succeeded": 1, "failed": 1, "submitted": 1, "pending": 1}
    assert job.spent == 0.25
    # a stored result is never overwritten
    again.record("job-1", [ItemUpdate(0, "failed", error="late")])
    assert again.items("job-1")[0].outcome == "succeeded"
    # a rerun retries failures, keeping their attempts
    assert again.retry_unfinished("job-1", 300.0) == 1
    assert [(i.outcome, i.attempts) for i in again.items("job-1")][1] == ("pending", 1)
    again.close()


def test_an_intent_without_an_id_is_given_up_and_its_items_pending(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.sqlite")
    new_job(store)
    seq = store.add_intent(
        "job-1", indices=[1, 3], round=1, provider="sim", deployment="", model="sim:sim-1", now=1.0
    )
    assert store.drop_intent("job-1", seq, lost=True) == [1, 3]
    assert [i.outcome for i in store.items("job-1")] == ["pending"] * 4
    assert store.batches("job-1")[0].status == "lost"
    store.close()


def test_a_live_process_holds_the_job_and_a_dead_ones_lock_is_taken_over(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.sqlite")
    new_job(store)
    token = store.lock("job-1")
    with pytest.raises(BatchJobBusyError, match=f"being run by process {os.getpid()}"):
        store.lock("job-1")
    store.unlock("job-1", token)
    # a process that took the lock and died without releasing it
    code = (
        "import sys; from agentic_synth.batch._state import StateStore; "
        "StateStore(sys.argv[1]).lock('job-1'); import os; os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "s.sqlite")], check=True)
    assert store.jobs()[0].lock_pid not in (None, os.getpid())
    assert store.locked_by("job-1") is None  # dead
    store.unlock("job-1", store.lock("job-1"))
    store.close()


def test_bad_locations_are_refused_naming_the_option(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigurationError,
        match=r"--batch-state .*missing/s.sqlite: directory .* does not exist; create it first",
    ):
        StateStore(tmp_path / "missing" / "s.sqlite", flag="--batch-state")
    with pytest.raises(ConfigurationError, match="is a directory"):
        StateStore(tmp_path)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(ConfigurationError, match="is not a batch state file"):
        StateStore(junk)


def test_default_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_state_path() == tmp_path / "agentic-synth" / "batches.sqlite"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")  # not absolute: ignored, per the spec
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_state_path() == tmp_path / "home" / ".cache" / "agentic-synth" / "batches.sqlite"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    store = StateStore.open()
    assert store.path == tmp_path / "xdg" / "agentic-synth" / "batches.sqlite"
    store.close()
