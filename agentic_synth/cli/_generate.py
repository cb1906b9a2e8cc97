"""``synth generate``: run a batch from a file, stdin or a template to JSON Lines.

Every flag, the models, the schema file and the input are checked before the
output is touched; results are written as they complete (or in input order
with ``--ordered``), so an interrupted run keeps everything that finished.
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Iterator
from typing import Any

import anyio

from .._estimate import estimate_text
from .._exceptions import ConfigurationError
from .._synth import Synth
from ._args import check_range
from ._batch_cmd import add_batch_mode_arguments, check_batch_mode_arguments
from ._batch_cmd import generate as generate_batch_job
from ._common import (
    add_budget_arguments,
    add_cache_arguments,
    add_generation_arguments,
    add_metrics_arguments,
    add_shared_limits_argument,
    budget_from,
    build_synth,
    check_metrics_arguments,
    estimate_from_flags,
    run_async,
    serve_job_metrics,
)
from ._inputs import PARAM_KEYS, FileSource, Input, Source, TemplateSource
from ._live import LiveDisplay, add_progress_arguments, check_progress_arguments
from ._output import FLUSH_SECONDS, End, Output
from ._records import ROW_HELP, result_line
from ._summary import Summary

__all__ = ["add_parser"]

_DEFAULT_TEMPLATE = "Write a short, realistic customer question about product #{i}."
_DEFAULT_COUNT = 100

_PARAMS_LINE = textwrap.fill(
    "generation parameters for this input only (" + ", ".join(sorted(PARAM_KEYS)) + "),",
    width=88,
    initial_indent="      ",
    subsequent_indent="      ",
)

_EPILOG = f"""\
input (--input FILE, '-' for stdin): one input per line, read as the job goes
  {{"prompt": "..."}} or {{"messages": [{{"role": "user", "content": "..."}}]}}, plus
{_PARAMS_LINE}
      plus "id" and any other field, which are copied to the input's output row
  "a JSON string", or [{{"role": ...}}, ...] (a list of message objects)
  anything else is a plain-text prompt, even if it starts with [ or "
  A line starting with {{ that is not such an object becomes that input's error row
  (its message names FILE:LINE) and the job goes on. Blank lines are skipped.
  A line that is not UTF-8 stops reading: the inputs before it finish, then exit 2.

{ROW_HELP}

The output file is replaced only once the job produces: at its first success (failures
before it are held back, up to --concurrency of them), or when it ends. A job refused at
the start or stopped on its own (every key rejected) leaves an existing file as it was.

Progress goes to stderr: a live view on a terminal (counts, rate, ETA, errors, cost, the
cache's hit rate, the bottleneck analyzer's top finding), else a line every
--progress-every seconds; at the end the summary and, when the analyzer finds a medium
or high bottleneck, "why it was slow". -q silences all of it.

exit status: 0 done; 1 with --strict when an input failed; 2 a usage, input, model or
output problem; 130 on Ctrl-C (everything finished is written, in index order with
--ordered); 141 when the reader of stdout went away (| head).
"""


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "generate",
        help="generate completions for many prompts, or a dataset (structured, timeseries, events)",
        description="Generate one completion per input and write JSON Lines results. "
        "Datasets: synth generate structured|timeseries|events (each has its --help).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "-i", "--input", metavar="FILE", help="JSONL or text file of prompts ('-' for stdin)"
    )
    src.add_argument(
        "-p", "--prompt", metavar="TEMPLATE", help="a prompt template; {i} becomes 0..count-1"
    )
    p.add_argument("-n", "--count", type=int, help=f"inputs made from --prompt ({_DEFAULT_COUNT})")
    p.add_argument(
        "-o",
        "--output",
        default="-",
        metavar="FILE",
        help="JSONL results ('-': stdout); replaced only once the first result is ready",
    )
    p.add_argument(
        "--ordered",
        action="store_true",
        help="write results in input order (holds at most 4 x concurrency results back)",
    )
    p.add_argument("--strict", action="store_true", help="exit 1 if any input failed")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress or summary on stderr")
    add_progress_arguments(p)
    p.add_argument(
        "--dedup-prompts",
        type=float,
        metavar="JACCARD",
        help="do not send inputs this close to an earlier one (e.g. 0.8); they reuse its result",
    )
    p.add_argument(
        "--dedup-outputs",
        type=float,
        metavar="JACCARD",
        help="mark outputs this close to an earlier output (near_duplicate_of)",
    )
    p.add_argument(
        "--drop-duplicates",
        action="store_true",
        help="with --dedup-outputs: drop such outputs (an error record says why)",
    )
    add_cache_arguments(p)
    add_batch_mode_arguments(p)
    add_metrics_arguments(p)
    add_budget_arguments(p)
    add_shared_limits_argument(p)
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="count the job's tokens and print what it would cost (worst case: every "
        "max_tokens used), then exit without sending anything or touching --output",
    )
    p.add_argument(
        "--expected-output-tokens",
        type=int,
        metavar="N",
        help="with --dry-run: also price the job at N output tokens per request",
    )
    add_generation_arguments(p)
    p.set_defaults(run=run)


def _check(args: argparse.Namespace) -> None:
    check_range("--count", args.count, low=0)
    if args.count is not None and args.input is not None:
        raise ConfigurationError("--count applies to --prompt; with --input every line is an input")
    check_range("--dedup-prompts", args.dedup_prompts, low=0, low_open=True, high=1)
    check_range("--dedup-outputs", args.dedup_outputs, low=0, low_open=True, high=1)
    if args.drop_duplicates and args.dedup_outputs is None:
        raise ConfigurationError("--drop-duplicates needs --dedup-outputs JACCARD, e.g. 0.9")
    check_metrics_arguments(args)
    check_progress_arguments(args)
    check_batch_mode_arguments(args)
    check_range("--expected-output-tokens", args.expected_output_tokens, low=0)
    if args.expected_output_tokens is not None and not args.dry_run:
        raise ConfigurationError("--expected-output-tokens is for --dry-run; add --dry-run")


def _open_source(args: argparse.Namespace) -> Source:
    if args.input is None:
        count = _DEFAULT_COUNT if args.count is None else args.count
        return TemplateSource(args.prompt or _DEFAULT_TEMPLATE, count)
    return FileSource.open(args.input)


def _open_output(args: argparse.Namespace, source: Source, concurrency: int) -> Output:
    # failures before the first success are held back up to one wave of requests
    output = Output.open("--output", args.output, hold=concurrency)
    mine = output.identity()
    if isinstance(source, FileSource) and mine is not None and mine == source.identity():
        output.close(End.FAILED)
        raise ConfigurationError(
            f"--output {output.name} is the input file; write the results to another file"
        )
    return output


def run(args: argparse.Namespace) -> int:
    _check(args)
    if args.dry_run:
        return _dry_run(args)
    synth = build_synth(
        args,
        dedup_prompts=args.dedup_prompts,
        dedup_outputs=args.dedup_outputs,
        dedup_action="drop" if args.drop_duplicates else "flag",
    )
    with serve_job_metrics(args, synth):
        if args.mode == "batch":
            return generate_batch_job(args, synth, _open_source, _open_output)
        return _run(args, synth)


def _dry_run(args: argparse.Namespace) -> int:
    """Count and price every input; nothing is sent, the output is not opened."""
    budget = budget_from(args)  # its flags are checked as for a real run
    source = _open_source(args)
    try:
        values = source.values() if isinstance(source, FileSource) else source.feed({})
        assert isinstance(values, Iterator)
        estimate = estimate_from_flags(
            args, values, expected_output_tokens=args.expected_output_tokens
        )
    finally:
        if isinstance(source, FileSource):
            source.close()
    if source.error is not None:
        raise ConfigurationError(source.error)
    for line in estimate_text(estimate, None if budget is None else budget.limit_usd):
        print(line)
    return 0


def _run(args: argparse.Namespace, synth: Synth) -> int:
    source = _open_source(args)
    try:
        output = _open_output(args, source, synth.max_concurrency)
        display = LiveDisplay("generate", quiet=args.quiet, every=args.progress_every)
        summary = Summary(display)
        total = None  # a file or stdin: not known ahead
        if args.input is None:
            total = _DEFAULT_COUNT if args.count is None else args.count
        display.start(total, metrics=synth.metrics)
        ended = False  # to its end or by Ctrl-C: then "why it was slow" is worth saying
        try:
            run_async(_generate, synth, source, output, args.ordered, summary)
            ended = source.error is None
        except KeyboardInterrupt:
            ended = True
            raise
        finally:
            summary.finish(synth)
            if ended:
                display.explain(synth.metrics())
    finally:
        if isinstance(source, FileSource):
            source.close()
    if source.error is not None:
        raise ConfigurationError(
            f"{source.error}; stopped reading there after {summary.done} results"
        )
    return 1 if (args.strict and summary.failed) else 0


async def _generate(
    synth: Synth, source: Source, output: Output, ordered: bool, summary: Summary
) -> None:
    inputs: dict[int, Input] = {}  # by index, only while in flight: memory ~ concurrency
    batch = None
    end = End.STOPPED  # interrupted, unless it gets to the end
    try:
        async with synth, anyio.create_task_group() as tg:
            # a slow trickle of results still reaches the output every FLUSH_SECONDS
            tg.start_soon(output.flush_every, FLUSH_SECONDS)
            tg.start_soon(summary.display.tick)  # a stalled job still shows its clock
            batch = synth.iter_batch(source.feed(inputs), ordered=ordered)
            async with batch:
                async for index, result in batch:
                    ok = result.ok
                    if output.add(result_line(index, inputs.pop(index, None), result), ok):
                        await output.flush()
                    summary.add(ok)
            tg.cancel_scope.cancel()
        end = End.COMPLETE if source.error is None else End.STOPPED
    except BaseExceptionGroup as group:  # the flusher's task group wraps what it stops on
        error = _single(group)
        if isinstance(error, Exception):
            end = End.FAILED
        raise error from None
    except Exception:
        end = End.FAILED
        raise
    finally:
        if batch is not None:
            # stopped early in input order: results that finished behind a slower
            # input are still written, in index order, after the in-order prefix
            for index, result in batch.leftovers():
                output.add(result_line(index, inputs.pop(index, None), result), result.ok)
                summary.add(result.ok)
        source.stop()
        output.close(end)


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one error that stopped the job (the rest are the cancellations it caused)."""
    cancelled = anyio.get_cancelled_exc_class()
    leaves: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        exc = stack.pop()
        if isinstance(exc, BaseExceptionGroup):
            stack.extend(exc.exceptions)
        elif not isinstance(exc, cancelled):
            leaves.append(exc)
    return leaves[0] if leaves else group
