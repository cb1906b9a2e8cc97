"""The results stream: whole lines, in order when asked, through Ctrl-C and closed pipes."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import threading
import time
from pathlib import Path

from cli_helpers import SYNTH, Runner, read_line, read_rows

from agentic_synth.cli._records import RESULT_KEYS


def _interrupt_once_written(args: list[str], out: Path) -> subprocess.CompletedProcess[str]:
    """Start a long job, Ctrl-C it once some results are on disk."""
    proc = subprocess.Popen([*SYNTH, *args], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 2000):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)  # a deadline against a hang, not a measurement
    return subprocess.CompletedProcess(proc.args, proc.returncode, "", err)


def test_ctrl_c_keeps_what_completed(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    proc = _interrupt_once_written(
        ["generate", "-n", "100000", "--sim-latency", "0.05", "-c", "32", "-o", str(out)], out
    )
    assert proc.returncode == 130, proc.stderr
    rows = read_rows(out)  # every line whole: nothing half-written
    assert 0 < len(rows) < 100_000
    assert len({r["index"] for r in rows}) == len(rows)
    assert "interrupted" in proc.stderr and "Traceback" not in proc.stderr


def test_ctrl_c_in_order_writes_the_held_back_results_after_the_in_order_prefix(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out.jsonl"
    # a long latency tail: results pile up behind slow inputs, in the re-order window
    args = ["generate", "-n", "100000", "--ordered", "-c", "16", "-o", str(out)]
    proc = _interrupt_once_written([*args, "--sim-latency", "lognormal:0.01,2"], out)
    assert proc.returncode == 130, proc.stderr
    indexes = [r["index"] for r in read_rows(out)]
    prefix = 0
    while prefix < len(indexes) and indexes[prefix] == prefix:
        prefix += 1
    held = indexes[prefix:]
    assert prefix > 0 and held, indexes
    assert held == sorted(set(held)) and held[0] > prefix  # index order, after the prefix
    assert len(held) <= 5 * 16  # bounded by the engine's window (4 x concurrency) + in flight


def test_ordered_output_is_in_input_order(synth: Runner, tmp_path: Path) -> None:
    proc = synth(
        "generate", "-n", "300", "--ordered", "-c", "16", "--sim-latency", "uniform:0,0.02",
        "-o", "out.jsonl", "-q",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert [r["index"] for r in read_rows(tmp_path / "out.jsonl")] == list(range(300))


def test_a_closed_stdout_pipe_ends_the_job_quietly() -> None:
    """`synth generate ... | head -n 3`: no traceback, no more requests, exit 141."""
    proc = subprocess.Popen(
        [*SYNTH, "generate", "-n", "1000000", "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    for _ in range(3):
        json.loads(read_line(proc.stdout))
    proc.stdout.close()  # what head does after three lines
    proc.wait(timeout=60)
    err = proc.stderr.read()
    assert proc.returncode == 141
    assert err == ""


def test_stdout_carries_only_rows_while_progress_goes_to_the_terminal() -> None:
    """With stderr on a terminal the live progress line is drawn there; stdout, the
    results stream, gets nothing but rows."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [*SYNTH, "generate", "-n", "200", "-c", "4", "--sim-latency", "0.005"],
        stdout=subprocess.PIPE,
        stderr=terminal,
        text=True,
    )
    os.close(terminal)
    seen: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the child closed the terminal
                return
            if not chunk:
                return
            seen.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    stdout, _ = proc.communicate(timeout=120)
    reader.join(timeout=30)
    os.close(controller)
    assert proc.returncode == 0
    rows = [json.loads(line) for line in stdout.splitlines()]
    assert len(rows) == 200 and all(tuple(r) == RESULT_KEYS for r in rows)
    terminal_text = b"".join(seen).decode()
    assert "\r" in terminal_text and " ok, 0 failed of 200 (" in terminal_text  # the live view
    assert "200 done, 0 failed in" in terminal_text  # the summary
