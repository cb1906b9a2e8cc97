"""``--metrics-port``: Prometheus ``/metrics`` of a running job, checked before it starts."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest
from cli_helpers import SYNTH, Runner, busy_port, one_line_error, read_line
from prometheus_client.parser import text_string_to_metric_families

EVENTS_RANGE = ("--start", "2026-01-01", "--end", "2026-01-02")


@pytest.mark.parametrize(
    "command",
    [
        ["generate", "-n", "3"],
        ["generate", "structured", "--schema", "builtin:users", "-n", "3"],
        ["generate", "events", "-n", "3", *EVENTS_RANGE, "--mode", "llm"],
    ],
)
def test_a_busy_port_is_one_line_and_nothing_runs(
    synth: Runner, tmp_path: Path, command: list[str]
) -> None:
    out = tmp_path / "out.jsonl"
    with busy_port() as port:
        done = synth(*command, "-m", "sim:sim-1", "-o", str(out), "--metrics-port", str(port))
    assert done.returncode == 2
    line = one_line_error(done.stderr)
    assert line == (
        f"synth: error: port {port} is in use; pick another with --metrics-port "
        "(0 picks a free one)"
    )
    assert done.stdout == "" and not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["generate", "--metrics-port", "70000"],
            "--metrics-port must be in [0, 65535], got 70000",
        ),
        (["generate", "--metrics-host", "0.0.0.0"], "--metrics-host needs --metrics-port PORT"),
        (
            ["generate", "events", "-n", "3", *EVENTS_RANGE, "--metrics-port", "0"],
            "--metrics-port applies to --mode llm",
        ),
    ],
)
def test_flag_mistakes_are_one_line(synth: Runner, args: list[str], message: str) -> None:
    done = synth(*args)
    assert done.returncode == 2
    assert message in one_line_error(done.stderr)


def requests_total(text: str) -> dict[str, float]:
    for family in text_string_to_metric_families(text):
        if family.name == "synth_requests":
            return {s.labels["outcome"]: s.value for s in family.samples}
    raise AssertionError("no synth_requests_total in the scrape")


def test_a_scrape_during_a_job_sees_its_requests(tmp_path: Path) -> None:
    # 60 requests, 2 at a time, 0.1 s each: the job lasts about 3 s
    out = tmp_path / "out.jsonl"
    args = ["generate", "-p", "question {i}", "-n", "60", "-c", "2", "-m", "sim:sim-1"]
    args += ["--sim-latency", "0.1", "--metrics-port", "0", "-o", str(out)]
    child = subprocess.Popen(
        [*SYNTH, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        first = read_line(child.stderr, deadline=30)
        assert first.startswith("synth: metrics at http://127.0.0.1:"), first
        url = first.split(" at ", 1)[1].strip()
        seen: dict[str, float] = {}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            response = httpx.get(url, timeout=5)
            running = child.poll() is None
            assert response.status_code == 200
            seen = requests_total(response.text)
            if seen["succeeded"] > 0 or not running:
                break
            time.sleep(0.05)
        assert running, "the job ended before a scrape saw it"
        assert 0 < seen["succeeded"] < 60 and seen["failed"] == 0
        stdout, stderr = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 0, stderr
    assert stdout == "" and len(out.read_text().splitlines()) == 60
    with pytest.raises(httpx.TransportError):  # the server ends with the job
        httpx.get(url, timeout=2)
