"""Input lines: one bad line never stops a job; extra fields ride along to the row."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

from cli_helpers import SYNTH, Runner, one_line_error, read_line, read_rows

from agentic_synth.cli._records import RESULT_KEYS


def test_unreadable_lines_become_error_rows_and_the_job_goes_on(
    synth: Runner, tmp_path: Path
) -> None:
    lines = [
        json.dumps({"prompt": "first"}),  # line 1
        "{not json at all",  # 2: starts with { but is not JSON
        json.dumps({"text": "no prompt here", "id": "q3"}),  # 3: JSON of the wrong shape
        "",  # 4: blank: not an input
        "[citation needed] is a plain prompt",  # 5
        '"Hi," she said. A plain prompt too',  # 6
        json.dumps("a JSON string prompt"),  # 7
        json.dumps([{"role": "user", "content": "hi"}]),  # 8: messages
        '["a", "b"]',  # 9: a list, but not of messages: text
        "   ",  # 10: blank
        json.dumps({"prompt": "p", "messages": [{"role": "user", "content": "x"}]}),  # 11
        json.dumps({"prompt": "bad max_tokens", "max_tokens": 0}),  # 12
        "last line without a newline",  # 13
    ]
    (tmp_path / "in.jsonl").write_text("\n".join(lines))
    proc = synth("generate", "-i", "in.jsonl", "-o", "out.jsonl", "--ordered", "-q")
    assert proc.returncode == 0, proc.stderr
    rows = read_rows(tmp_path / "out.jsonl")
    assert [r["index"] for r in rows] == list(range(11))  # blank lines are not inputs
    assert [r["ok"] for r in rows] == [
        True,
        False,
        False,
        True,
        True,
        True,
        True,
        True,
        False,
        False,
        True,
    ]
    assert rows[1]["message"].startswith("in.jsonl:2: not valid JSON")
    assert rows[2]["message"].startswith(
        "in.jsonl:3: a JSON object needs exactly one of 'prompt' or 'messages'"
    )
    assert rows[2]["id"] == "q3" and rows[2]["input_text"] == "no prompt here"
    assert rows[8]["message"].startswith("in.jsonl:11: a JSON object needs exactly one")
    assert rows[9]["error_type"] == "InvalidRequestError" and "max_tokens" in rows[9]["message"]
    assert [r["prompt"] for r in rows[3:8]] == [
        "[citation needed] is a plain prompt",
        '"Hi," she said. A plain prompt too',
        "a JSON string prompt",
        [{"role": "user", "content": "hi"}],
        '["a", "b"]',
    ]
    assert rows[10]["prompt"] == "last line without a newline"


def test_stdin_the_same_way(synth: Runner) -> None:
    proc = synth("generate", "-i", "-", "--ordered", "-q", input="one\n{oops\ntwo\n")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(r["prompt"], r["ok"]) for r in rows] == [("one", True), (None, False), ("two", True)]
    assert rows[1]["message"].startswith("<stdin>:2: not valid JSON")


def test_extra_fields_are_carried_to_the_row(synth: Runner, tmp_path: Path) -> None:
    inputs = [
        {"id": "a-1", "prompt": "Name a river.", "topic": "geo", "meta": {"split": "train"}},
        {"prompt": "No id here.", "topic": "misc", "max_tokens": 3},
        {"id": 7, "messages": [{"role": "user", "content": "hi"}], "text": "mine", "ok": 1},
        {"id": "bad", "prompt": "", "difficulty": 3},
    ]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(i) + "\n" for i in inputs))
    proc = synth("generate", "-i", "in.jsonl", "-o", "out.jsonl", "--ordered", "-q")
    assert proc.returncode == 0, proc.stderr
    first, second, third, fourth = read_rows(tmp_path / "out.jsonl")
    # an id is echoed instead of the prompt; without one, the prompt is
    assert (first["id"], first["prompt"]) == ("a-1", None)
    assert first["topic"] == "geo" and first["meta"] == {"split": "train"}
    assert (second["id"], second["prompt"], second["topic"]) == (None, "No id here.", "misc")
    assert second["ok"] and second["output_tokens"] <= 3  # parameters still apply
    assert "max_tokens" not in second  # ... and are not echoed
    # a field named like a result key keeps its value under input_<name>
    assert third["text"] != "mine" and third["input_text"] == "mine"
    assert third["ok"] is True and third["input_ok"] == 1
    # a failed input keeps its id and fields too
    assert (fourth["ok"], fourth["id"], fourth["difficulty"]) == (False, "bad", 3)


def test_every_row_has_the_same_keys(synth: Runner, tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text('ok prompt\n{"broken\n"another"\n')
    proc = synth("generate", "-i", "in.txt", "-o", "out.jsonl", "-q")
    assert proc.returncode == 0, proc.stderr
    rows = read_rows(tmp_path / "out.jsonl")
    assert sorted(r["ok"] for r in rows) == [False, True, True]
    assert all(tuple(r) == RESULT_KEYS for r in rows)


def test_crlf_bom_and_escaped_surrogates_are_read_and_written_safely(
    synth: Runner, tmp_path: Path
) -> None:
    (tmp_path / "in.txt").write_bytes(
        b'\xef\xbb\xbf{"prompt": "caf\xc3\xa9", "id": 1}\r\n'
        b'{"prompt": "lone \\ud800 half", "id": 2}\r\n'
    )
    proc = synth("generate", "-i", "in.txt", "-o", "out.jsonl", "--ordered", "-q")
    assert proc.returncode == 0, proc.stderr
    rows = read_rows(tmp_path / "out.jsonl")  # valid UTF-8 JSON throughout
    assert [r["id"] for r in rows] == [1, 2] and all(r["ok"] for r in rows)


def test_a_line_that_is_not_utf8_stops_reading_there(synth: Runner, tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_bytes(b"one\ntwo\n\ncaf\xe9 latin-1\nfour\n")
    out = tmp_path / "out.jsonl"
    proc = synth("generate", "-i", "in.txt", "-o", "out.jsonl", "--ordered", "-q")
    assert proc.returncode == 2
    line = one_line_error(proc.stderr)
    assert line.startswith("synth: error: in.txt:4: not UTF-8 (byte 0xe9")
    assert [r["prompt"] for r in read_rows(out)] == ["one", "two"]  # what was read is done
    out.write_text("old\n")
    (tmp_path / "in.txt").write_bytes(b"\xff\xfeU\x00T\x00F\x00-\x001\x006\x00\n")
    proc = synth("generate", "-i", "in.txt", "-o", "out.jsonl", "-q")
    assert proc.returncode == 2 and "in.txt:1: not UTF-8" in one_line_error(proc.stderr)
    assert out.read_text() == "old\n"


def test_a_slow_stdin_does_not_hold_up_requests(tmp_path: Path) -> None:
    """The first result comes out while stdin is still open and silent (reading used to
    block the event loop), and Ctrl-C then ends the job without waiting for stdin."""
    proc = subprocess.Popen(
        [*SYNTH, "generate", "-i", "-", "-q"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write('{"id": "first", "prompt": "Say something."}\n')
        proc.stdin.flush()
        row = json.loads(read_line(proc.stdout))
        assert (row["id"], row["ok"]) == ("first", True)
        proc.send_signal(signal.SIGINT)  # stdin still open, nothing more on it
        proc.wait(timeout=60)
        assert proc.stderr is not None
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err


def test_help_documents_the_input_lines_and_every_row_key(synth: Runner) -> None:
    proc = synth("generate", "--help")
    assert proc.returncode == 0
    text = proc.stdout
    assert all(key in text for key in RESULT_KEYS)
    assert "blank lines are not inputs" in text and "input_<name>" in text
