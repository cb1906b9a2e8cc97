"""synth generate structured|timeseries|events, in a subprocess on the embedded simulator.

Files are read back by independent readers (json, csv, pyarrow) and records checked
with an independent validator (jsonschema); refusals are one line, exit 2, and leave
an existing output as it was.
"""

from __future__ import annotations

import csv
import itertools
import json
import subprocess
import time
from datetime import datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
from cli_helpers import SYNTH, Runner, one_line_error, read_rows

from agentic_synth.datasets import builtin_schema

OLD = "an earlier run's dataset\n"


def checker(schema: dict[str, object]) -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(schema)
    validator: jsonschema.protocols.Validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    return validator


# -- structured ----------------------------------------------------------------------


def test_structured_to_jsonl_every_record_valid_and_the_account_on_stderr(
    synth: Runner, tmp_path: Path
) -> None:
    proc = synth("generate", "structured", "--schema", "builtin:users", "-n", "40", "-o", "u.jsonl")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    rows = read_rows(tmp_path / "u.jsonl")
    assert len(rows) == 40
    validator = checker(builtin_schema("users"))
    for row in rows:
        validator.validate(row)
    err = proc.stderr
    assert "40 of 40 records valid" in err and "0 failed" in err
    assert "near-duplicate rate" in err and "tokens in" in err
    assert "wrote 40 rows to u.jsonl" in err
    assert "Traceback" not in err


def test_structured_attributes_are_columns_and_fill_the_instructions(
    synth: Runner, tmp_path: Path
) -> None:
    (tmp_path / "topics.txt").write_text("billing, refunds\nshipping: late\n")
    proc = synth(
        "generate",
        "structured",
        "--schema",
        "builtin:products",
        "-n",
        "60",
        "-o",
        "p.csv",
        "--instructions",
        "A {difficulty} product for {topic}.",
        "--attribute",
        "topic=@topics.txt",
        "--attribute",
        "difficulty=easy:0.7,hard:0.3",
        "--attribute",
        "tone=dry,warm",
        "-q",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # -q
    with open(tmp_path / "p.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 60
    assert {r["topic"] for r in rows} <= {"billing, refunds", "shipping: late"}
    assert {r["difficulty"] for r in rows} == {"easy", "hard"}
    assert {r["tone"] for r in rows} == {"dry", "warm"}
    schema_columns = list(builtin_schema("products")["properties"])
    assert list(rows[0])[: len(schema_columns)] == schema_columns


def test_structured_to_parquet_read_back_by_pyarrow(synth: Runner, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    proc = synth(
        "generate", "structured", "--schema", "builtin:transactions", "-n", "25",
        "-o", "t.parquet", "--per-call", "5", "-q",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    table = pq.read_table(tmp_path / "t.parquet")
    assert table.num_rows == 25
    validator = checker(builtin_schema("transactions"))
    for row in table.to_pylist():
        # Parquet types date-time columns as timestamps: back to the JSON string form
        plain = {
            k: v.isoformat().replace("+00:00", "Z") if isinstance(v, datetime) else v
            for k, v in row.items()
            if v is not None
        }
        validator.validate(plain)


def test_structured_from_a_schema_file_to_stdout_is_pure_jsonl(
    synth: Runner, tmp_path: Path
) -> None:
    schema = {
        "type": "object",
        "properties": {
            "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"},
            "qty": {"type": "integer", "minimum": 1, "maximum": 9},
        },
        "required": ["sku", "qty"],
        "additionalProperties": False,
    }
    (tmp_path / "s.json").write_text(json.dumps(schema))
    proc = synth("generate", "structured", "--schema", "s.json", "-n", "15", "-o", "-")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(rows) == 15
    for row in rows:
        checker(schema).validate(row)
    assert "15 of 15 records valid" in proc.stderr


def test_same_seed_same_file_and_a_rerun_with_the_cache_replays(
    synth: Runner, tmp_path: Path
) -> None:
    args = ["generate", "structured", "--schema", "builtin:users", "-n", "30", "--seed", "7"]
    assert synth(*args, "-o", "a.jsonl", "-q", "--cache", "c.db").returncode == 0
    proc = synth(*args, "-o", "b.jsonl", "--cache", "c.db")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert "cache: 30 replayed, 0 sent" in proc.stderr


def test_failed_slots_are_counted_written_to_failures_and_strict_exits_1(
    synth: Runner, tmp_path: Path
) -> None:
    # 5 output tokens cut every answer: never valid, so every slot fails
    proc = synth(
        "generate", "structured", "--schema", "builtin:users", "-n", "4", "-o", "u.jsonl",
        "--max-tokens", "5", "--max-corrections", "1", "--max-restarts", "0",
        "--failures", "fails.jsonl", "--strict",
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert read_rows(tmp_path / "u.jsonl") == []
    fails = read_rows(tmp_path / "fails.jsonl")
    assert [f["slot"] for f in fails] == [0, 1, 2, 3]
    assert all("cut off at max_tokens" in f["reason"] and f["attempts"] == 2 for f in fails)
    assert "0 of 4 records valid, 4 failed" in proc.stderr
    assert "slot 0 failed: the output was cut off" in proc.stderr
    assert "... and 1 more (--failures FILE writes every one)" in proc.stderr


def test_a_closed_stdout_reader_ends_the_job_quietly(tmp_path: Path) -> None:
    with subprocess.Popen(
        [*SYNTH, "generate", "structured", "--schema", "builtin:users", "-n", "3000",
         "-o", "-", "--sim-latency", "0.01", "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
    ) as proc:  # fmt: skip
        assert proc.stdout is not None and proc.stderr is not None
        json.loads(proc.stdout.readline())
        proc.stdout.close()
        err = proc.stderr.read().decode()
        code = proc.wait(timeout=60)
    assert code == 141, err
    assert "Traceback" not in err


# -- time series and events ----------------------------------------------------------


def test_timeseries_local_to_csv(synth: Runner, tmp_path: Path) -> None:
    proc = synth(
        "generate", "timeseries", "--count", "48", "--start", "2026-01-01T00:00:00Z",
        "--interval", "1h", "--metric", "cpu:base=40,scale=20,min=0,max=100",
        "--metric", "mem", "--trend", "up", "--noise", "0.05", "-o", "s.csv",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "s.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 48 and list(rows[0]) == ["timestamp", "cpu", "mem"]
    times = [datetime.fromisoformat(r["timestamp"]) for r in rows]
    assert all(b - a == timedelta(hours=1) for a, b in itertools.pairwise(times))
    assert all(0 <= float(r["cpu"]) <= 100 for r in rows)
    assert "48 points computed" in proc.stderr and "wrote 48 rows to s.csv" in proc.stderr


def test_timeseries_count_derived_from_the_range_to_stdout(synth: Runner) -> None:
    proc = synth(
        "generate", "timeseries", "--start", "2026-01-01", "--end", "2026-01-02",
        "--interval", "6h", "--no-seasonality", "-o", "-",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["timestamp"] for r in rows] == [
        "2026-01-01T00:00:00Z",
        "2026-01-01T06:00:00Z",
        "2026-01-01T12:00:00Z",
        "2026-01-01T18:00:00Z",
    ]


def test_same_seed_same_series(synth: Runner, tmp_path: Path) -> None:
    args = ["generate", "timeseries", "-n", "100", "--start", "2026-01-01", "-q", "--seed", "5"]
    assert synth(*args, "-o", "a.jsonl").returncode == 0
    assert synth(*args, "-o", "b.jsonl").returncode == 0
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


def test_events_local_exact_count_sorted_weighted_and_users_from_a_file(
    synth: Runner, tmp_path: Path
) -> None:
    (tmp_path / "ids.txt").write_text("u-a\nu-b\nu-c\n")
    proc = synth(
        "generate", "events", "--count", "500", "--start", "2026-01-01", "--end", "2026-01-08",
        "--event-type", "login:0.5", "--event-type", "purchase:0.1",
        "--event-type", "page_view:0.4", "--distribution", "poisson",
        "--users", "@ids.txt", "-o", "e.jsonl",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = read_rows(tmp_path / "e.jsonl")
    assert len(rows) == 500
    assert [r["timestamp"] for r in rows] == sorted(r["timestamp"] for r in rows)
    assert {r["event_type"] for r in rows} == {"login", "purchase", "page_view"}
    assert {r["user_id"] for r in rows} <= {"u-a", "u-b", "u-c"}
    assert all("2026-01-01" <= r["timestamp"] < "2026-01-08" for r in rows)
    assert "500 events computed" in proc.stderr


def test_events_to_parquet(synth: Runner, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    proc = synth(
        "generate", "events", "-n", "2500", "--start", "2026-01-01T00:00:00Z",
        "--end", "2026-01-02T00:00:00Z", "--distribution", "normal", "-o", "e.parquet", "-q",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    table = pq.read_table(tmp_path / "e.parquet")
    assert table.num_rows == 2500
    assert {"event_id", "timestamp", "event_type", "user_id"} <= set(table.column_names)


# -- refusals ------------------------------------------------------------------------


STRUCTURED = ["generate", "structured", "--schema", "builtin:users", "-n", "5"]
SERIES = ["generate", "timeseries", "-n", "5", "--start", "2026-01-01"]
EVENTS = ["generate", "events", "-n", "5", "--start", "2026-01-01", "--end", "2026-01-02"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([*STRUCTURED, "--per-call", "0"], "--per-call must be >= 1, got 0"),
        ([*STRUCTURED, "--max-corrections", "-1"], "--max-corrections must be >= 0"),
        ([*STRUCTURED, "--dedup-outputs", "2"], "--dedup-outputs must be in (0, 1], got 2"),
        ([*STRUCTURED, "--temperature", "3"], "--temperature must be in [0, 2], got 3"),
        (["generate", "structured", "--schema", "builtin:users", "-n", "-1"], "--count must be"),
        ([*STRUCTURED, "--schema", "builtin:nope"], "--schema builtin:nope: no such built-in"),
        ([*STRUCTURED, "--schema", "missing.json"], "cannot read --schema missing.json"),
        ([*STRUCTURED, "--schema", "bad.json"], "--schema bad.json is not a valid record schema"),
        ([*STRUCTURED, "--attribute", "topic"], "--attribute 'topic': write NAME=a,b,c"),
        ([*STRUCTURED, "--attribute", "t=a:0.5,b"], "--attribute t: give every value a weight"),
        ([*STRUCTURED, "--attribute", "t=a", "--attribute", "t=b"], "--attribute t is given twice"),
        ([*STRUCTURED, "--attribute", "my-topic=a"], "--attribute my-topic: a name is letters"),
        ([*STRUCTURED, "--attribute", "t=a:-1,b:2"], "weights must be numbers >= 0"),
        (
            [*STRUCTURED, "--instructions", "About {topc}", "--attribute", "topic=a"],
            "--instructions refers to {topc}, which no --attribute defines (attributes: topic)",
        ),
        ([*STRUCTURED, "--instructions", "@missing.txt"], "cannot read --instructions @missing"),
        ([*STRUCTURED, "-o", "u.txt"], "--output u.txt: the format comes from the suffix"),
        ([*STRUCTURED, "-o", "nodir/u.jsonl"], "nodir does not exist; create it first"),
        ([*STRUCTURED, "--failures", "out.jsonl"], "--failures and --output name the same file"),
        ([*STRUCTURED, "-m", "claude-haiku-4-5"], "no API key for anthropic:claude-haiku-4-5"),
        ([*SERIES, "--start", "soon"], "--start='soon' is not an ISO 8601 time"),
        ([*SERIES, "--interval", "hourly"], "--interval='hourly': expected a duration"),
        ([*SERIES, "--noise", "-1"], "--noise must be >= 0, got -1"),
        ([*SERIES, "--metric", "cpu:bse=4"], "--metric cpu:bse=4: options are base="),
        ([*SERIES, "--metric", "cpu", "--metric", "cpu"], "timeseries: metric names repeat"),
        ([*SERIES, "-m", "sim"], "-m applies to --mode llm; --mode local computes every value"),
        ([*SERIES, "--temperature", "1"], "--temperature applies to --mode llm"),
        ([*EVENTS, "--end", "2025-01-01"], "events: time_range"),
        ([*EVENTS, "--users", "many"], "--users must be a number of users or @FILE"),
        ([*EVENTS, "--users", "0"], "--users must be >= 1, got 0"),
        ([*EVENTS, "--event-type", "a:1", "--event-type", "b"], "give every value a weight"),
    ],
)
def test_a_refused_dataset_command_names_the_problem_and_leaves_the_output_alone(
    synth: Runner, tmp_path: Path, args: list[str], expected: str
) -> None:
    (tmp_path / "bad.json").write_text('{"type": "object", "properties": {"a": {"type": 1}}}')
    out = tmp_path / "out.jsonl"
    out.write_text(OLD)
    proc = synth(*args[:2], "-o", "out.jsonl", *args[2:])
    assert proc.returncode == 2, proc.stderr
    line = one_line_error(proc.stderr)
    assert line.startswith("synth: error: ") and expected in line, line
    assert out.read_text() == OLD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json", "out.jsonl"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["generate", "structured", "-n", "5"], "the following arguments are required: --schema"),
        (["generate", "events", "-n", "5"], "the following arguments are required: --start"),
        (["generate", "structured", "--schema", "x", "-n", "many"], "invalid int value: 'many'"),
        ([*SERIES, "--trend", "sideways"], "argument --trend: invalid choice: 'sideways'"),
    ],
)
def test_a_malformed_dataset_flag_is_one_line(
    synth: Runner, args: list[str], expected: str
) -> None:
    proc = synth(*args)
    assert proc.returncode == 2
    line = one_line_error(proc.stderr)
    assert line.startswith(f"synth generate {args[1]}: error: ") and expected in line, line


def test_help_shows_the_dataset_modes_beside_prompt_mode(synth: Runner) -> None:
    proc = synth("generate", "--help")
    assert proc.returncode == 0 and "synth generate structured|timeseries|events" in proc.stdout
    for kind in ("structured", "timeseries", "events"):
        proc = synth("generate", kind, "--help")
        assert proc.returncode == 0 and f"usage: synth generate {kind}" in proc.stdout
        assert "exit status" in proc.stdout


def test_prompt_mode_is_unchanged_beside_the_dataset_modes(synth: Runner, tmp_path: Path) -> None:
    proc = synth("generate", "-n", "3", "-p", "Question {i}?", "-o", "out.jsonl", "-q")
    assert proc.returncode == 0, proc.stderr
    assert sorted(r["index"] for r in read_rows(tmp_path / "out.jsonl")) == [0, 1, 2]
    proc = synth("generate", "-n", "3", "structured")
    assert proc.returncode == 2 and "unrecognized arguments: structured" in proc.stderr


# -- the engine behind the flags -----------------------------------------------------


def test_injected_invalid_answers_are_corrected_and_never_written(
    synth: Runner, tmp_path: Path
) -> None:
    (tmp_path / "synth.toml").write_text(
        '[[models]]\nmodel = "sim:sim-1"\n[models.options]\nfault_invalid_output = 0.3\nseed = 1\n'
    )
    proc = synth(
        "generate", "structured", "--schema", "builtin:users", "-n", "200", "-o", "u.jsonl"
    )
    assert proc.returncode == 0, proc.stderr
    rows = read_rows(tmp_path / "u.jsonl")
    assert len(rows) == 200
    validator = checker(builtin_schema("users"))
    for row in rows:
        validator.validate(row)
    summary = proc.stderr.splitlines()[0]
    corrected = int(summary.split("(")[1].split(" after corrections")[0].replace(",", ""))
    assert 30 <= corrected <= 100, summary  # about 30% of 200 needed a correction


def test_killed_mid_run_a_rerun_with_the_cache_finishes_the_same_file(tmp_path: Path) -> None:
    job = [
        *SYNTH, "generate", "structured", "--schema", "builtin:users", "-n", "400",
        "--seed", "3", "-c", "8", "-o", "out.jsonl", "--cache", "c.db",
    ]  # fmt: skip
    reference = [*job[:-4], "-o", "ref.jsonl", "-q"]
    subprocess.run(reference, cwd=tmp_path, check=True, timeout=120)
    out = tmp_path / "out.jsonl"
    with subprocess.Popen(
        [*job, "--sim-latency", "0.02", "-q"], cwd=tmp_path, stderr=subprocess.DEVNULL
    ) as proc:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 20_000):
            time.sleep(0.02)
        proc.kill()  # SIGKILL: nothing runs after it
    partial = read_rows(out)
    assert 0 < len(partial) < 400
    rerun = subprocess.run(job, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    rows = read_rows(out)
    assert len(rows) == 400  # none missing, none twice
    validator = checker(builtin_schema("users"))
    for row in rows:
        validator.validate(row)
    # what had completed is replayed, not asked again, and lands where it was
    assert rows[: len(partial)] == partial == read_rows(tmp_path / "ref.jsonl")[: len(partial)]
    replayed = int(rerun.stderr.split("cache: ")[1].split(" replayed")[0].replace(",", ""))
    assert replayed >= len(partial)
    # (Not byte-identical to ref.jsonl past the kill: the simulator numbers repeats of
    # one prompt per process, so fresh calls after a resume restart that count.)


def test_a_live_progress_line_on_a_terminal_only(tmp_path: Path) -> None:
    import os
    import pty

    leader, follower = pty.openpty()
    args = ["generate", "structured", "--schema", "builtin:users", "-n", "300", "-o", "u.csv"]
    with subprocess.Popen(
        [*SYNTH, *args, "--sim-latency", "0.02", "-c", "8"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=follower,
    ) as proc:
        os.close(follower)
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        assert proc.wait(timeout=60) == 0
    os.close(leader)
    text = seen.decode()
    assert "\r" in text and " failed of 300 (" in text and "/s, ETA " in text
    assert "300 of 300 records valid" in text
    piped = subprocess.run([*SYNTH, *args], cwd=tmp_path, capture_output=True, text=True)
    assert "\r" not in piped.stderr and "ETA" not in piped.stderr


# -- --mode llm: the model writes the content on the computed skeleton ---------------


def test_timeseries_llm_annotates_the_computed_points(synth: Runner, tmp_path: Path) -> None:
    args = ["generate", "timeseries", "-n", "24", "--start", "2026-01-01", "--seed", "2", "-q"]
    assert synth(*args, "-o", "local.jsonl").returncode == 0
    proc = synth(*args, "--mode", "llm", "--per-call", "6", "-o", "llm.jsonl")
    assert proc.returncode == 0, proc.stderr
    local, llm = read_rows(tmp_path / "local.jsonl"), read_rows(tmp_path / "llm.jsonl")
    assert len(llm) == 24
    assert [{k: r[k] for k in ("timestamp", "value")} for r in llm] == local
    assert all(isinstance(r["annotation"], str) and r["annotation"] for r in llm)


def test_events_llm_with_a_content_schema(synth: Runner, tmp_path: Path) -> None:
    (tmp_path / "content.json").write_text(
        json.dumps(
            {
                "type": "object",
                "properties": {
                    "summary": {"type": "string", "minLength": 3},
                    "severity": {"type": "string", "enum": ["low", "high"]},
                },
                "required": ["summary", "severity"],
            }
        )
    )
    proc = synth(
        "generate", "events", "-n", "15", "--start", "2026-01-01", "--end", "2026-01-02",
        "--mode", "llm", "--content-schema", "content.json", "--user-distribution", "zipf",
        "-o", "e.csv",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "e.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 15
    assert {"event_id", "timestamp", "event_type", "user_id", "summary", "severity"} <= set(rows[0])
    assert {r["severity"] for r in rows} <= {"low", "high"}
    assert "15 of 15 records valid" in proc.stderr


def test_llm_content_that_cannot_be_written_leaves_the_computed_row(
    synth: Runner, tmp_path: Path
) -> None:
    proc = synth(
        "generate", "events", "-n", "4", "--start", "2026-01-01", "--end", "2026-01-02",
        "--mode", "llm", "--max-tokens", "3", "--max-corrections", "0", "--max-restarts", "0",
        "--per-call", "1", "-o", "e.jsonl", "--failures", "f.jsonl",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = read_rows(tmp_path / "e.jsonl")
    assert len(rows) == 4 and all(r["event_id"] and r["timestamp"] for r in rows)
    assert len(read_rows(tmp_path / "f.jsonl")) == 4
    assert "0 of 4 records valid, 4 failed" in proc.stderr
    assert "wrote 4 rows to e.jsonl" in proc.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([*SERIES, "--per-call", "5"], "--per-call applies to --mode llm"),
        ([*EVENTS, "--content-schema", "c.json"], "--content-schema applies to --mode llm"),
        ([*SERIES, "--mode", "llm", "--per-call", "0"], "--per-call must be >= 1, got 0"),
        (
            [*SERIES, "--mode", "llm", "--content-schema", "clash.json"],
            "--content-schema clash.json defines timestamp, which are computed",
        ),
        (
            [*EVENTS, "--mode", "llm", "--content-schema", "list.json"],
            "--content-schema list.json holds a JSON array",
        ),
        ([*SERIES, "--period", "2h"], "timeseries: period 2:00:00 must span more than two"),
    ],
)
def test_llm_mode_flags_are_checked_before_anything_runs(
    synth: Runner, tmp_path: Path, args: list[str], expected: str
) -> None:
    (tmp_path / "c.json").write_text('{"type": "object", "properties": {"x": {}}}')
    (tmp_path / "clash.json").write_text('{"type": "object", "properties": {"timestamp": {}}}')
    (tmp_path / "list.json").write_text("[]")
    (tmp_path / "out.jsonl").write_text(OLD)
    proc = synth(*args[:2], "-o", "out.jsonl", *args[2:])
    assert proc.returncode == 2, proc.stderr
    line = one_line_error(proc.stderr)
    assert expected in line, line
    assert (tmp_path / "out.jsonl").read_text() == OLD
