"""``synth generate --mode batch`` and ``synth batch status|collect|cancel``.

A batch job sends its inputs through the provider's batch API (half the price,
answers within 24 hours). Its state file keeps every batch id and result, so
Ctrl-C, a crash or a closed laptop costs nothing: the same command again
re-attaches to the running batches, and ``synth batch collect`` writes what
finished.
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from collections.abc import AsyncIterable, Callable
from typing import Any

from .._exceptions import ConfigurationError
from .._synth import Synth
from .._types import Completion, Result
from ..batch import batch_jobs, cancel_job, collect_job
from ..batch._job import BatchProgress
from ..batch._run import check_options, run_batch
from ..batch._state import BatchRow, JobRow
from ._args import check_range
from ._common import run_async
from ._inputs import Input, Source
from ._output import End, Output
from ._records import result_line
from ._streams import say

__all__ = ["add_batch_mode_arguments", "add_parser", "check_batch_mode_arguments", "generate"]

_DEFAULT_POLL = 30.0


def add_batch_mode_arguments(p: argparse.ArgumentParser) -> None:
    """``--mode``, ``--batch-state``, ``--poll-interval`` for ``synth generate``."""
    p.add_argument(
        "--mode",
        choices=("online", "batch"),
        default="online",
        help="online (default): a request per input now; batch: the provider's batch API "
        "(half price, answers within 24 h; rerun the same command to resume)",
    )
    _state_argument(p)
    p.add_argument(
        "--poll-interval",
        type=float,
        metavar="SECONDS",
        help=f"--mode batch: longest wait between polls of the batches ({_DEFAULT_POLL:g})",
    )


def _state_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--batch-state",
        metavar="PATH",
        help="the batch jobs' state file (default: $XDG_CACHE_HOME/agentic-synth/"
        "batches.sqlite, else ~/.cache/agentic-synth/batches.sqlite)",
    )


def check_batch_mode_arguments(args: argparse.Namespace) -> None:
    if args.mode != "batch":
        given = (("--batch-state", args.batch_state), ("--poll-interval", args.poll_interval))
        for flag, value in given:
            if value is not None:
                raise ConfigurationError(f"{flag} applies to --mode batch; add --mode batch")
        return
    check_range("--poll-interval", args.poll_interval, low=0, low_open=True)
    for flag, value in (
        ("--dedup-prompts", args.dedup_prompts),
        ("--dedup-outputs", args.dedup_outputs),
    ):
        if value is not None:
            raise ConfigurationError(f"{flag} works with --mode online only; drop it or the mode")


# -- synth generate --mode batch ---------------------------------------------------------


class _Reporter:
    """Progress on stderr: the job's id and state file first, then a line whenever the
    counts change (at most one a second)."""

    def __init__(self, quiet: bool, state: str | None) -> None:
        self.quiet = quiet
        self.state = state
        self.last: tuple[int, ...] | None = None
        self.said = 0.0
        self.started = False
        self.progress: BatchProgress | None = None

    def __call__(self, p: BatchProgress) -> None:
        self.progress = p
        if self.quiet:
            return
        if not self.started:
            self.started = True
            where = self.state or "the default state file"
            say(
                f"synth: batch job {p.job_id}: {p.total} inputs, {p.replayed} already answered "
                f"(state: {where}; Ctrl-C leaves the batches running, the same command resumes)"
            )
        counts = (p.batches_running, p.submitted, p.processing, p.succeeded, p.failed)
        now = time.monotonic()
        if counts != self.last and now - self.said >= 1.0:
            self.last, self.said = counts, now
            say(
                f"synth: batch: {p.batches_running} running, {p.submitted} submitted, "
                f"{p.processing} processing, {p.succeeded} succeeded, {p.failed} failed"
            )


def generate(
    args: argparse.Namespace,
    synth: Synth,
    open_source: Callable[[argparse.Namespace], Source],
    open_output: Callable[[argparse.Namespace, Source, int], Output],
) -> int:
    """``synth generate --mode batch``: the whole input is read, the job runs (or
    resumes), then every row is written in input order."""
    options = check_options(
        _DEFAULT_POLL if args.poll_interval is None else args.poll_interval, 3, "batch", flags=True
    )
    source = open_source(args)
    try:
        output = open_output(args, source, 0)
        reporter = _Reporter(args.quiet, args.batch_state)
        end = End.FAILED
        try:
            results, inputs = run_async(_job, synth, source, args.batch_state, options, reporter)
            for i, result in enumerate(results):
                output.add(result_line(i, inputs[i], result), result.ok)
            end = End.COMPLETE if source.error is None else End.STOPPED
        except KeyboardInterrupt:
            end = End.STOPPED
            if reporter.progress is not None:
                say(
                    f"synth: batch job {reporter.progress.job_id} keeps running at the provider; "
                    "run the same command again to collect it (synth batch status shows it)"
                )
            raise
        finally:
            output.close(end)
    finally:
        source.stop()
        close = getattr(source, "close", None)
        if close is not None:
            close()
    failed = sum(not r.ok for r in results)
    if not args.quiet:
        _summary(synth, results, reporter.progress)
    if source.error is not None:
        raise ConfigurationError(f"{source.error}; stopped reading there, nothing was submitted")
    return 1 if (args.strict and failed) else 0


async def _job(
    synth: Synth,
    source: Source,
    state: str | None,
    options: Any,
    reporter: _Reporter,
) -> tuple[list[Result], dict[int, Input]]:
    inputs: dict[int, Input] = {}
    feed = source.feed(inputs)
    values = [v async for v in feed] if isinstance(feed, AsyncIterable) else list(feed)
    if source.error is not None:
        return [], inputs
    labels = [
        {"id": inputs[i].id, "prompt": inputs[i].prompt, "extras": inputs[i].extras}
        for i in range(len(values))
    ]
    async with synth:
        results = await run_batch(
            synth,
            values,
            params=synth._params,
            options=options,
            batch_state=state,
            labels=labels,
            progress=reporter,
            flags=True,
        )
    return results, inputs


def _money(value: float, unpriced: int) -> str:
    text = f"${value:,.4f}"
    return f"at least {text} ({unpriced} results of unknown price)" if unpriced else text


def _summary(synth: Synth, results: list[Result], p: BatchProgress | None) -> None:
    m = synth.metrics()
    failed = sum(not r.ok for r in results)
    replayed = sum(isinstance(r, Completion) and r.cached for r in results)
    say(
        f"{len(results)} done, {failed} failed ({replayed} replayed from the state or cache); "
        f"tokens in {m.input_tokens:,}, out {m.output_tokens:,}"
    )
    if p is not None:
        say(
            f"batches: {p.batches_submitted} in {p.rounds} round(s); cost "
            f"{_money(p.cost, p.unpriced)} at batch prices"
        )
    if m.errors_by_class:
        errors = ", ".join(f"{k}: {v}" for k, v in sorted(m.errors_by_class.items()))
        say(f"errors: {errors}")


# -- synth batch status|collect|cancel -----------------------------------------------------


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "batch",
        help="status, collect or cancel batch jobs (synth generate --mode batch)",
        description="Look into the batch jobs of a state file, write what a job's batches "
        "have finished, or cancel a job. Keys come from ANTHROPIC_API_KEY / OPENAI_API_KEY.",
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    status = actions.add_parser("status", help="jobs, their batches, counts and spend")
    status.add_argument("job", nargs="?", metavar="JOB_ID", help="one job (default: all)")
    _state_argument(status)
    status.add_argument("--json", action="store_true", help="print the jobs as JSON")
    collect = actions.add_parser("collect", help="download what finished and write its rows")
    collect.add_argument("job", metavar="JOB_ID")
    _state_argument(collect)
    collect.add_argument(
        "-o", "--out", default="-", metavar="FILE", help="JSONL rows ('-': stdout)"
    )
    cancel = actions.add_parser("cancel", help="cancel the job's batches; keep what finished")
    cancel.add_argument("job", metavar="JOB_ID")
    _state_argument(cancel)
    cancel.add_argument(
        "--wait",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long to wait for the canceled batches to end (60)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.action == "status":
        return _status(args)
    if args.action == "collect":
        return _collect(args)
    check_range("--wait", args.wait, low=0)
    return _cancel(args)


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _job_line(job: JobRow) -> str:
    o = job.outcomes
    waiting = o.get("pending", 0) + o.get("submitted", 0)
    return (
        f"{job.job_id}  {job.status}  {job.model}  {job.total} inputs: "
        f"{o.get('succeeded', 0)} succeeded, {o.get('failed', 0)} failed, "
        f"{o.get('canceled', 0)} canceled, {waiting} waiting; spent ${job.spent:,.4f}; "
        f"created {_when(job.created_at)}"
    )


def _batch_line(b: BatchRow) -> str:
    return (
        f"  {b.batch_id or '(not submitted)'}  round {b.round}  {b.status}  {b.items} items: "
        f"{b.processing} processing, {b.succeeded} succeeded, {b.errored} errored, "
        f"{b.canceled} canceled, {b.expired} expired; submitted {_when(b.submitted_at)}"
        + (f"; {b.error}" if b.error else "")
    )


def _status(args: argparse.Namespace) -> int:
    found = batch_jobs(_state(args), args.job)
    if args.job is not None and not found:
        raise ConfigurationError(
            f"no batch job {args.job} in the state file; run synth batch status to list them"
        )
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "job_id": job.job_id,
                        "status": job.status,
                        "model": job.model,
                        "total": job.total,
                        "outcomes": job.outcomes,
                        "spent_usd": job.spent,
                        "created_at": job.created_at,
                        "running_pid": job.lock_pid,
                        "batches": [
                            {
                                "batch_id": b.batch_id,
                                "round": b.round,
                                "status": b.status,
                                "items": b.items,
                                "processing": b.processing,
                                "succeeded": b.succeeded,
                                "errored": b.errored,
                                "canceled": b.canceled,
                                "expired": b.expired,
                                "submitted_at": b.submitted_at,
                                "ended_at": b.ended_at,
                                "error": b.error,
                            }
                            for b in batches
                        ],
                    }
                    for job, batches in found
                ],
                indent=2,
            )
        )
        return 0
    if not found:
        print("no batch jobs")
    for job, batches in found:
        print(_job_line(job))
        for b in batches:
            print(_batch_line(b))
    return 0


def _state(args: argparse.Namespace) -> str | None:
    state: str | None = args.batch_state
    return state


def _collect(args: argparse.Namespace) -> int:
    output = Output.open("--out", args.out)
    end = End.FAILED
    try:
        job, results = run_async(_collect_job, args.job, _state(args))
        labels = _labels(args, job.total)
        written = 0
        for i, result in enumerate(results):
            if result is not None:
                output.add(result_line(i, labels[i], result), result.ok)
                written += 1
        end = End.COMPLETE
    finally:
        output.close(end)
    waiting = job.total - written
    failed = sum(r is not None and not r.ok for r in results)
    say(
        f"synth: batch job {job.job_id}: wrote {written} rows ({written - failed} succeeded, "
        f"{failed} failed)"
        + (f"; {waiting} inputs still running, collect again later" if waiting else "")
    )
    return 0


async def _collect_job(job: str, state: str | None) -> tuple[JobRow, list[Result | None]]:
    return await collect_job(job, batch_state=state, flags=True)


async def _cancel_job(
    job: str, state: str | None, wait: float
) -> tuple[JobRow, list[Result | None]]:
    return await cancel_job(job, batch_state=state, wait=wait, flags=True)


def _labels(args: argparse.Namespace, total: int) -> list[Input | None]:
    """Each item's input as the job recorded it, for the rows' id, prompt and fields."""
    from ..batch._state import StateStore

    store = StateStore.open(_state(args), flag="--batch-state")
    try:
        items = store.items(args.job)
    finally:
        store.close()
    labels: list[Input | None] = [None] * total
    for item in items:
        label = item.label
        if isinstance(label, dict):
            labels[item.idx] = Input(
                None, label.get("id"), label.get("prompt"), label.get("extras")
            )
    return labels


def _cancel(args: argparse.Namespace) -> int:
    job, results = run_async(_cancel_job, args.job, _state(args), args.wait)
    if job.status == "done":
        say(f"synth: batch job {job.job_id} is done: every input is answered, nothing to cancel")
        return 0
    kept = sum(r is not None and r.ok for r in results)
    canceled = job.outcomes.get("canceled", 0)
    running = job.outcomes.get("submitted", 0)
    say(
        f"synth: batch job {job.job_id} canceled: {kept} results kept, {canceled} inputs "
        "canceled"
        + (f", {running} still in batches that are canceling (collect later)" if running else "")
        + "; run the job again to submit the canceled inputs"
    )
    return 0
