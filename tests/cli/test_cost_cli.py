"""Cost on the command line: --dry-run, --budget, the cost in rows and summary."""

from __future__ import annotations

from pathlib import Path

from cli_helpers import Runner, one_line_error, read_rows


def test_dry_run_prints_the_estimate_and_touches_nothing(synth: Runner, tmp_path: Path) -> None:
    out = tmp_path / "keep.jsonl"
    out.write_text("precious\n")
    done = synth(
        "generate", "-p", "Write about {i}", "-n", "1000", "--max-tokens", "100",
        "--dry-run", "--expected-output-tokens", "40", "--budget", "0.2", "-o", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "dry run: nothing sent; 1,000 requests to sim:sim-1" in text
    assert "output tokens: at most 100,000" in text and "expected 40,000" in text
    # 1,000 x (4 input tokens at $1/M + 100 output at $5/M) = $0.504
    assert "cost: at most $0.5040, expected $0.2040" in text
    assert "budget $0.2000: the worst case does not fit" in text
    assert out.read_text() == "precious\n"


def test_dry_run_counts_a_file_and_needs_no_key(synth: Runner, tmp_path: Path) -> None:
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"prompt": "hello there"}\n{"prompt": "x", "max_tokens": 5}\n\n')
    done = synth(
        "generate", "-i", str(inputs), "-m", "anthropic:claude-sonnet-4-5",
        "--mode", "batch", "--dry-run",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "2 requests to anthropic:claude-sonnet-4-5 at batch prices" in done.stdout
    assert "cl100k_base" in done.stdout


def test_budget_flags_are_checked_in_flag_terms(synth: Runner) -> None:
    for args, message in (
        (["--budget", "0"], "--budget"),
        (["--budget", "-3"], "--budget"),
        (["--budget-period", "day"], "--budget-period needs --budget USD"),
        (["--expected-output-tokens", "10"], "--expected-output-tokens is for --dry-run"),
    ):
        done = synth("generate", "-p", "x", "-n", "1", *args)
        assert done.returncode == 2
        assert message in one_line_error(done.stderr)


def test_a_budget_stops_sending_and_the_summary_says_so(synth: Runner, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    done = synth(
        "generate", "-p", "Write about {i}", "-n", "300", "--max-tokens", "400",
        "--budget", "0.05", "-o", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = read_rows(out)
    assert len(rows) == 300
    paid = sum(r["cost"] for r in rows if r["ok"])
    refused = [r for r in rows if not r["ok"]]
    assert 0 < paid <= 0.05
    assert refused and all(r["error_type"] == "BudgetExceededError" for r in refused)
    assert all(r["cost"] is None for r in refused)
    assert "of $0.05 budget" in done.stderr and "reached" in done.stderr
    assert f"{len(refused)} inputs not sent (budget reached)" in done.stderr
    assert "budget_alert" in done.stderr  # the 50/80/90% alerts were logged


def test_calls_without_a_price_make_the_cost_unknown_or_a_lower_bound() -> None:
    import dataclasses
    import time

    from agentic_synth.cli._live import cost_text
    from agentic_synth.monitor import Metrics

    base = Metrics(time.monotonic).snapshot()
    assert cost_text(dataclasses.replace(base, cost_usd=1.5)) == "cost $1.5000"
    unknown = dataclasses.replace(base, unpriced_calls=12)
    assert cost_text(unknown) == "cost unknown (12 calls without a price)"
    part = dataclasses.replace(base, cost_usd=1.5, unpriced_calls=2)
    assert cost_text(part) == "cost $1.5000 + 2 unpriced calls"
    budget = {"limit_usd": 10.0, "spent_usd": 2.5, "exhausted": False}
    with_budget = dataclasses.replace(base, cost_usd=2.5, budget=budget)
    assert cost_text(with_budget) == "cost $2.5000 of $10.00 budget (25%)"
