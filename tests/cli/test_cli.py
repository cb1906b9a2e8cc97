"""The ``synth`` command line, run in process (and once as the installed script)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agentic_synth.cli import main


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_generate_from_template_writes_one_record_per_input(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    code = main(
        ["generate", "-n", "50", "-p", "Question {i}?", "-o", str(out), "-q", "--max-tokens", "8"]
    )
    assert code == 0
    records = read_jsonl(out)
    assert sorted(r["index"] for r in records) == list(range(50))
    assert all(r["ok"] and r["model"] == "sim:sim-1" and r["output_tokens"] <= 8 for r in records)


def test_generate_from_jsonl_ordered_with_errors_kept(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(
        "\n".join(
            [
                json.dumps({"prompt": "first"}),
                "plain text prompt",
                json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}),
                json.dumps({"prompt": "bad", "max_tokens": 0}),
                "",
                json.dumps("a JSON string prompt"),
            ]
        )
        + "\n"
    )
    out = tmp_path / "out.jsonl"
    code = main(["generate", "-i", str(src), "-o", str(out), "--ordered", "-q", "--strict"])
    assert code == 1  # --strict: one input failed
    records = read_jsonl(out)
    assert [r["index"] for r in records] == [0, 1, 2, 3, 4]
    assert [r["ok"] for r in records] == [True, True, True, False, True]
    assert records[2]["output_tokens"] <= 3
    assert records[3]["error_type"] == "InvalidRequestError"
    assert "max_tokens" in str(records[3]["message"])


def test_generate_bad_input_file_names_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["generate", "-i", str(tmp_path / "missing.jsonl"), "-q"]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"prompt": \n')
    assert main(["generate", "-i", str(bad), "-o", str(tmp_path / "o.jsonl"), "-q"]) == 0
    broken = [r for r in read_jsonl(tmp_path / "o.jsonl") if not r["ok"]]
    assert str(broken[0]["message"]).startswith(f"{bad}:2: not valid JSON")
    assert main(["generate", "-m", "nope:x", "-q"]) == 2
    assert "unknown provider" in capsys.readouterr().err


def test_generate_with_json_schema(tmp_path: Path) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
        "required": ["name", "age"],
    }
    (tmp_path / "s.json").write_text(json.dumps(schema))
    out = tmp_path / "out.jsonl"
    assert (
        main(
            ["generate", "-n", "5", "--json-schema", str(tmp_path / "s.json"), "-o", str(out), "-q"]
        )
        == 0
    )
    import jsonschema  # type: ignore[import-untyped]

    for record in read_jsonl(out):
        jsonschema.validate(json.loads(str(record["text"])), schema)


def test_bench_reports_and_fails_on_thresholds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "bench.json"
    assert main(["bench", "-n", "300", "-c", "32", "--json", str(report)]) == 0
    figures = json.loads(report.read_text())
    assert figures["requests"] == 300 and figures["error_rate"] == 0
    assert figures["throughput"] > 0 and figures["latency_p99"] is not None
    assert "throughput" in capsys.readouterr().out
    # an impossible threshold fails the run: what a CI performance job relies on
    assert main(["bench", "-n", "100", "--min-throughput", "1e12"]) == 1
    assert "FAIL: throughput" in capsys.readouterr().err


def test_installed_script_runs_the_readme_job(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "agentic_synth.cli",
            "generate",
            "--count",
            "20",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(read_jsonl(out)) == 20
    assert "20 done, 0 failed" in proc.stderr


def test_generate_dedups_prompts(tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("Write a poem about the sea and the sky at night\n" * 3 + "Name three rivers\n")
    out = tmp_path / "out.jsonl"
    assert (
        main(
            [
                "generate",
                "-i",
                str(src),
                "-o",
                str(out),
                "-q",
                "--ordered",
                "--dedup-prompts",
                "0.8",
            ]
        )
        == 0
    )
    records = read_jsonl(out)
    assert [r.get("duplicate_of") for r in records] == [None, 0, 0, None]
