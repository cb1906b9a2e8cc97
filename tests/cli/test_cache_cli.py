"""``synth generate --cache``: resume after a crash, and ``synth cache stats|clear|export``.

The crash test is the promise a user relies on: SIGKILL a job at any moment,
rerun it with the same cache, and it sends only what had not completed (at most
the requests in flight at the crash), and every input ends with its row.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from agentic_synth.simulator import MockServer, SimConfig

CLI = [sys.executable, "-m", "agentic_synth.cli"]


def synth(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )


def rows(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_rerun_with_the_cache_replays_and_sends_only_the_rest(tmp_path: Path) -> None:
    db = tmp_path / "cache.db"
    first = tmp_path / "a.jsonl"
    second = tmp_path / "b.jsonl"
    ran = synth("generate", "-n", "40", "-o", str(first), "--cache", str(db), "-q")
    assert ran.returncode == 0, ran.stderr
    again = synth("generate", "-n", "50", "-o", str(second), "--cache", str(db), "--ordered")
    assert again.returncode == 0, again.stderr
    assert "cache: 40 replayed, 10 sent" in again.stderr
    a = {r["index"]: r for r in rows(first)}
    b = rows(second)
    assert [r["index"] for r in b] == list(range(50))
    assert all(r["cached"] for r in b[:40]) and not any(r["cached"] for r in b[40:])
    assert [r["text"] for r in b[:40]] == [a[i]["text"] for i in range(40)]


def test_cache_stats_export_and_clear(tmp_path: Path) -> None:
    db = tmp_path / "cache.db"
    assert (
        synth(
            "generate", "-n", "12", "-o", str(tmp_path / "o.jsonl"), "--cache", str(db), "-q"
        ).returncode
        == 0
    )
    stats = synth("cache", "stats", str(db), "--json")
    assert stats.returncode == 0 and json.loads(stats.stdout)["entries"] == 12
    exported = synth("cache", "export", str(db), "-o", str(tmp_path / "e.jsonl"))
    assert exported.returncode == 0, exported.stderr
    entries = rows(tmp_path / "e.jsonl")
    assert len(entries) == 12 and all(len(e["key"]) == 32 and e["text"] for e in entries)
    assert synth("cache", "clear", str(db)).returncode == 0
    assert json.loads(synth("cache", "stats", str(db), "--json").stdout)["entries"] == 0


def test_cache_mistakes_are_one_line(tmp_path: Path) -> None:
    missing = synth("cache", "stats", str(tmp_path / "nope.db"))
    assert missing.returncode == 2 and "is not a cache file" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad = synth("generate", "-n", "1", "-o", str(tmp_path / "o.jsonl"), "--memory-limit", "lots")
    assert bad.returncode == 2 and "--memory-limit must be a size" in bad.stderr


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_sigkill_at_any_moment_then_resume_pays_only_for_what_was_in_flight(
    tmp_path: Path, seed: int
) -> None:
    n, concurrency = 600, 16
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps({"prompt": f"question {i}"}) + "\n" for i in range(n)))
    db = tmp_path / "cache.db"
    kill_after = random.Random(seed).randint(50, n - 100)  # requests the server has seen
    async with MockServer(SimConfig(latency=0.004, seed=seed)) as server:
        env = {**os.environ, "OPENAI_BASE_URL": server.openai_url, "OPENAI_API_KEY": "sk-test"}
        args = [
            *CLI,
            "generate",
            "-i",
            str(inputs),
            "-m",
            "openai:mock",
            "-c",
            str(concurrency),
            "--cache",
            str(db),
            "-q",
        ]
        with anyio.fail_after(60):
            process = await anyio.open_process(
                [*args, "-o", str(tmp_path / "first.jsonl")], env=env
            )
            while sum(server.stats.requests.values()) < kill_after:  # noqa: ASYNC110
                await anyio.sleep(0.005)  # the server has no event for this
            process.send_signal(signal.SIGKILL)
            await process.wait()
            sent_before = sum(server.stats.requests.values())
            assert sent_before < n  # it really was cut short
            second = await anyio.run_process(
                [*args, "-o", str(tmp_path / "second.jsonl")], env=env, check=False
            )
        assert second.returncode == 0, second.stderr.decode()
        sent_total = sum(server.stats.requests.values())
    out = rows(tmp_path / "second.jsonl")
    assert sorted(r["index"] for r in out) == list(range(n))  # every input, one row
    assert all(r["ok"] for r in out)
    # only what had not completed was sent again: at most the requests in flight
    assert sent_total - n <= concurrency
    replayed = sum(1 for r in out if r["cached"])
    assert replayed >= sent_before - concurrency
