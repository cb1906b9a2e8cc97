"""Everyday mistakes: one line on stderr, exit 2, no traceback, and no file destroyed."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from cli_helpers import SYNTH, Runner, busy_port, one_line_error

import agentic_synth

OLD = '{"index": 0, "text": "results of an earlier run"}\n'


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--max-tokens", "0"], "--max-tokens must be >= 1, got 0"),
        (["-c", "0"], "--concurrency must be >= 1, got 0"),
        (["-n", "-1"], "--count must be >= 0, got -1"),
        (["--temperature", "-0.5"], "--temperature must be in [0, 2], got -0.5"),
        (["--temperature", "9"], "--temperature must be in [0, 2], got 9"),
        (["--timeout", "0"], "--timeout must be > 0, got 0"),
        (["--timeout", "nan"], "--timeout must be > 0, got nan"),
        (["--dedup-prompts", "1.5"], "--dedup-prompts must be in (0, 1], got 1.5"),
        (["--drop-duplicates"], "--drop-duplicates needs --dedup-outputs"),
        (["-i", "in.txt", "-n", "5"], "--count applies to --prompt"),
        (["--sim-latency", "fast"], "--sim-latency: cannot parse latency 'fast'"),
        (["--sim-seed", "1", "-m", "openai:gpt-4o"], "--sim-seed applies to sim: models"),
        (["-m", "llama-3"], "model 'llama-3' has no provider"),
        (["-m", "nope:x"], "unknown provider 'nope'"),
        (["-m", "claude-haiku-4-5"], "no API key for anthropic:claude-haiku-4-5"),
        (["--json-schema", "missing.json"], "cannot read --json-schema missing.json"),
        (["--json-schema", "bad.json"], "--json-schema bad.json is not a JSON file"),
        (["--json-schema", "list.json"], "a JSON Schema is an object"),
        (["--json-schema", "."], "cannot read --json-schema ."),
        (["-i", "missing.jsonl"], "--input missing.jsonl does not exist"),
        (["-i", "."], "--input . is a directory"),
    ],
)
def test_a_refused_command_names_the_problem_and_leaves_the_output_alone(
    synth: Runner, tmp_path: Path, args: list[str], expected: str
) -> None:
    (tmp_path / "in.txt").write_text("a prompt\n")
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "list.json").write_text("[1, 2]")
    out = tmp_path / "out.jsonl"
    out.write_text(OLD)
    proc = synth("generate", "-o", "out.jsonl", *args)
    assert proc.returncode == 2
    line = one_line_error(proc.stderr)
    assert line.startswith("synth: error: ") and expected in line, line
    assert out.read_text() == OLD


def test_a_malformed_flag_value_is_one_line(synth: Runner) -> None:
    proc = synth("generate", "-n", "many")
    assert proc.returncode == 2
    assert "argument -n/--count: invalid int value: 'many'" in one_line_error(proc.stderr)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("nodir/out.jsonl", "/nodir does not exist; create it first"),
        (".", "--output . is a directory"),
    ],
)
def test_an_unwritable_output_is_refused_before_any_request(
    synth: Runner, tmp_path: Path, target: str, expected: str
) -> None:
    proc = synth("generate", "-n", "3", "-o", target)
    assert proc.returncode == 2
    assert expected in one_line_error(proc.stderr)
    assert not (tmp_path / "nodir").exists()


def test_the_input_file_is_never_the_output(synth: Runner, tmp_path: Path) -> None:
    src = tmp_path / "data.jsonl"
    src.write_text('{"prompt": "keep me"}\n')
    proc = synth("generate", "-i", "data.jsonl", "-o", "./data.jsonl")
    assert proc.returncode == 2
    assert "is the input file" in one_line_error(proc.stderr)
    assert src.read_text() == '{"prompt": "keep me"}\n'


def test_no_result_at_all_leaves_the_old_file_but_a_finished_empty_job_empties_it(
    synth: Runner, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text(OLD)
    proc = synth("generate", "-n", "0", "-o", "out.jsonl", "-q")
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == ""  # zero inputs ran to the end: their result is no rows
    created = tmp_path / "new.jsonl"
    assert synth("generate", "-o", "new.jsonl", "--max-tokens", "0").returncode == 2
    assert not created.exists()


def test_every_key_rejected_stops_the_job_and_keeps_the_old_file(
    synth: Runner, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text(OLD)
    server = subprocess.Popen(
        [*SYNTH, "mock-server", "--port", "0", "--require-api-key"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "SYNTH_MOCK_API_KEY": "sk-the-right-key"},
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip().rsplit(" ", 1)[-1]
        assert url.startswith("http://"), url
        proc = subprocess.run(
            [*SYNTH, "generate", "-m", "openai:mock", "-n", "50", "-o", "out.jsonl", "-q"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env={**os.environ, "OPENAI_BASE_URL": f"{url}/v1", "OPENAI_API_KEY": "sk-wrong"},
            check=False,
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert "no model can serve this job" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert out.read_text() == OLD


def test_version(synth: Runner) -> None:
    proc = synth("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"synth {agentic_synth.__version__}"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-n", "0"], "--requests must be >= 1, got 0"),
        (["-c", "0"], "--concurrency must be >= 1, got 0"),
        (["--max-tokens", "-3"], "--max-tokens must be >= 1, got -3"),
        (["--max-error-rate", "2"], "--max-error-rate must be in [0, 1], got 2"),
        (["--min-throughput", "0"], "--min-throughput must be > 0, got 0"),
        (["--max-p99", "-1"], "--max-p99 must be > 0, got -1"),
        (["--sim-latency", "uniform:2,1"], "--sim-latency: uniform latency needs lo <= hi"),
        (["-m", "nope:x"], "unknown provider 'nope'"),
        (["--json", "nodir/figures.json"], "does not exist"),
        (["--json", "."], "--json . is a directory"),
        (["-n", "ten"], "argument -n/--requests: invalid int value: 'ten'"),
    ],
)
def test_bench_refuses_bad_arguments_in_one_line(
    synth: Runner, tmp_path: Path, args: list[str], expected: str
) -> None:
    report = tmp_path / "figures.json"
    report.write_text('{"old": true}\n')
    proc = synth("bench", "--json", "figures.json", *args)
    assert proc.returncode == 2
    assert expected in one_line_error(proc.stderr)
    assert json.loads(report.read_text()) == {"old": True}


def test_bench_writes_its_report(synth: Runner, tmp_path: Path) -> None:
    proc = synth("bench", "-n", "50", "-c", "8", "--json", "figures.json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "figures.json").read_text())["requests"] == 50


def test_mock_server_on_a_busy_port_says_so(synth: Runner) -> None:
    with busy_port() as port:
        proc = synth("mock-server", "--port", str(port))
    assert proc.returncode == 2
    assert one_line_error(proc.stderr) == (
        f"synth: error: port {port} is in use; pick another with --port (0 picks a free one)"
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--port", "70000"], "--port must be in [0, 65535], got 70000"),
        (["--latency", "soon"], "cannot parse latency 'soon'"),
        (["--config-json", "[1"], "--config-json is not valid JSON"),
    ],
)
def test_mock_server_refuses_bad_arguments(synth: Runner, args: list[str], expected: str) -> None:
    proc = synth("mock-server", *args)
    assert proc.returncode == 2
    assert expected in one_line_error(proc.stderr)


def test_a_closed_stdout_is_refused_before_any_request(tmp_path: Path) -> None:
    proc = subprocess.run(
        [*SYNTH, "generate", "-n", "3"],
        capture_output=False,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
        cwd=tmp_path,
        preexec_fn=lambda: os.close(1),
        check=False,
    )
    assert proc.returncode == 2
    assert "--output -: stdout is closed; pass --output FILE" in one_line_error(proc.stderr)
