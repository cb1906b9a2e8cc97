"""``synth generate``: run a batch from a file (or a template) to a JSONL file.

Results are written as they complete (or in input order with ``--ordered``),
so an interrupted run keeps everything that finished.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

from .._exceptions import ConfigurationError
from .._synth import Synth
from .._types import Completion
from ._common import add_generation_arguments, generation_params, model_specs, run_async
from ._records import read_inputs, result_record

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "generate",
        help="generate completions for many prompts",
        description="Generate one completion per input and write JSON Lines results.",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "-i", "--input", metavar="FILE", help="JSONL or text file of prompts ('-' for stdin)"
    )
    src.add_argument(
        "-p", "--prompt", metavar="TEMPLATE", help="a prompt template; {i} becomes 0..count-1"
    )
    p.add_argument("-n", "--count", type=int, default=100, help="inputs made from --prompt (100)")
    p.add_argument(
        "-o", "--output", default="-", metavar="FILE", help="JSONL results ('-': stdout)"
    )
    p.add_argument("--ordered", action="store_true", help="write results in input order")
    p.add_argument("--strict", action="store_true", help="exit 1 if any input failed")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
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
    add_generation_arguments(p)
    p.set_defaults(run=run)


_DEFAULT_TEMPLATE = "Write a short, realistic customer question about product #{i}."


def _template_inputs(template: str, count: int) -> Iterator[str]:
    for i in range(count):
        yield template.replace("{i}", str(i))


def run(args: argparse.Namespace) -> int:
    if args.count < 0:
        raise ConfigurationError(f"--count must be >= 0, got {args.count}")
    specs = model_specs(args)
    params = generation_params(args)
    synth = Synth(
        specs,
        max_concurrency=args.concurrency,
        dedup_prompts=args.dedup_prompts,
        dedup_outputs=args.dedup_outputs,
        dedup_action="drop" if args.drop_duplicates else "flag",
    )
    with ExitStack() as stack:
        if args.input is None:
            inputs: Any = _template_inputs(args.prompt or _DEFAULT_TEMPLATE, args.count)
        elif args.input == "-":
            inputs = read_inputs(sys.stdin, "<stdin>")
        else:
            path = Path(args.input)
            if not path.is_file():
                raise ConfigurationError(
                    f"--input {path} does not exist; pass a JSONL or text file"
                )
            handle = stack.enter_context(path.open(encoding="utf-8"))
            inputs = read_inputs(handle, str(path))
        out: IO[str] = (
            sys.stdout
            if args.output == "-"
            else stack.enter_context(open(args.output, "w", encoding="utf-8"))
        )
        summary = _Summary(quiet=args.quiet)
        try:
            run_async(_generate, synth, inputs, params, out, args.ordered, summary)
        finally:
            out.flush()
            summary.finish(synth)
    return 1 if (args.strict and summary.failed) else 0


class _Summary:
    def __init__(self, *, quiet: bool) -> None:
        self.quiet = quiet
        self.live = not quiet and sys.stderr.isatty()  # a progress line only on a terminal
        self.done = 0
        self.failed = 0
        self.started = time.monotonic()
        self._last = 0.0

    def add(self, ok: bool) -> None:
        self.done += 1
        self.failed += not ok
        if self.live:
            now = time.monotonic()
            if now - self._last >= 1.0:
                self._last = now
                rate = self.done / max(now - self.started, 1e-9)
                print(
                    f"\r{self.done} done, {self.failed} failed, {rate:,.0f}/s",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )

    def finish(self, synth: Synth) -> None:
        if self.quiet:
            return
        m = synth.metrics()
        p50 = f"{m.latency_p50 * 1000:.1f} ms" if m.latency_p50 is not None else "-"
        p99 = f"{m.latency_p99 * 1000:.1f} ms" if m.latency_p99 is not None else "-"
        elapsed = time.monotonic() - self.started
        start = "\r" if self.live else ""
        print(
            f"{start}{self.done} done, {self.failed} failed in {elapsed:.1f}s "
            f"({self.done / max(elapsed, 1e-9):,.0f}/s); latency p50 {p50}, p99 {p99}; "
            f"tokens in {m.input_tokens:,}, out {m.output_tokens:,}",
            file=sys.stderr,
        )
        if m.errors_by_class:
            errors = ", ".join(f"{k}: {v}" for k, v in sorted(m.errors_by_class.items()))
            print(f"errors: {errors}", file=sys.stderr)


async def _generate(
    synth: Synth,
    inputs: Any,
    params: dict[str, Any],
    out: IO[str],
    ordered: bool,
    summary: _Summary,
) -> None:
    dumps = json.dumps
    pending: dict[int, str] = {}
    next_index = 0
    try:
        async with synth, synth.iter_batch(inputs, **params) as results:
            async for index, result in results:
                line = dumps(result_record(index, result), ensure_ascii=False) + "\n"
                summary.add(isinstance(result, Completion))
                if not ordered:
                    out.write(line)
                    continue
                pending[index] = line
                while next_index in pending:
                    out.write(pending.pop(next_index))
                    next_index += 1
    finally:
        # interrupted: keep what completed, even if it cannot be in order any more
        for index in sorted(pending):
            out.write(pending[index])
