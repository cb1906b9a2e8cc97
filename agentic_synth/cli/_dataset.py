"""``synth generate structured|timeseries|events``: datasets written to JSONL, CSV or Parquet.

Beside prompt mode (``synth generate -i prompts.jsonl``): the first word after
``generate`` picks the dataset kind. Every flag, the schema, the attributes, the
models and the output path are checked before anything is sent or written; the
file is written as records arrive, and an existing file is replaced only once
the first record is ready (a job refused or failing before that leaves it as it
was). ``-o -`` streams JSON Lines to stdout. The live view (valid, failed, ETA,
errors, cost, the analyzer's top finding: :mod:`._live`) goes to stderr, and at the end
the job's account and, when a bottleneck was found, "why it was slow".
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import math
import os
import string
import sys
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from .._exceptions import ConfigurationError, InvalidRequestError
from .._synth import Synth
from ._args import OneLineParser, check_range
from ._common import (
    add_budget_arguments,
    add_cache_arguments,
    add_generation_arguments,
    add_metrics_arguments,
    add_shared_limits_argument,
    build_synth,
    check_metrics_arguments,
    os_reason,
    run_async,
    serve_job_metrics,
)
from ._live import LiveDisplay, add_progress_arguments, check_progress_arguments
from ._output import FLUSH_SECONDS, End, Output, open_to_append
from ._streams import say
from ._validate import load_schema, schema_problems

__all__ = ["KINDS", "build_parser"]

KINDS = ("structured", "timeseries", "events")

#: Output tokens per request for dataset jobs unless a flag or the config says:
#: a record (or ``--per-call`` of them) needs more room than a short completion.
_DEFAULT_MAX_TOKENS = 1024
_SUFFIXES = (".jsonl", ".ndjson", ".csv", ".parquet")

_EXIT = """\
The output file's format comes from its suffix: .jsonl (or .ndjson), .csv, .parquet
(needs pyarrow); '-' writes JSON Lines to stdout. Rows are written as they are ready;
an existing file is replaced only once the first row is, so a job refused or failing
before that leaves it as it was, and Ctrl-C leaves a readable file. With --cache, a
rerun of an interrupted job replays what completed and writes the whole file again.

Models, keys, limits and defaults come from flags, then the config file (--config,
$SYNTH_CONFIG, ./synth.toml), then the environment; see synth config.

exit status: 0 done; 1 with --strict when a record could not be made; 2 a usage,
schema, model or output problem; 130 on Ctrl-C; 141 when the reader of stdout went away.
"""

_STRUCTURED_HELP = """\
examples:
  synth generate structured --schema builtin:users --count 1000 -o users.parquet
  synth generate structured --schema ticket.json --count 10000 -o tickets.jsonl \\
      --instructions "A {difficulty} support ticket about {topic}." \\
      --attribute topic=billing,shipping,returns --attribute difficulty=easy:0.7,hard:0.3

--attribute NAME=VALUES: the values are sampled per record (seeded: record i gets the
same values in every run) and stored as a column beside the record; {NAME} in
--instructions is replaced by the value (unused attributes are appended to the
instructions). VALUES is a,b,c (uniform), a:0.7,b:0.3 (weighted) or @FILE (one value
per line, uniform; for values holding commas or colons).

"""

_TIMESERIES_HELP = """\
examples:
  synth generate timeseries --count 720 --start 2026-01-01T00:00:00Z --interval 1h \\
      --metric cpu:base=40,scale=20,min=0,max=100 --metric memory --trend up -o series.csv
  synth generate timeseries --start 2026-01-01 --end 2026-02-01 --interval 15m -o -

The grid: point i is at start + i * interval; --count and --end may each be given or
derived (start + count, start + end, or all of them when they agree). Timestamps are
UTC ISO 8601. --metric NAME[:base=B,scale=S,min=LO,max=HI,decimals=D] (repeatable).

"""

_EVENTS_HELP = """\
examples:
  synth generate events --count 10000 --start 2026-01-01 --end 2026-01-08 \\
      --event-type login:0.5 --event-type purchase:0.1 --event-type page_view:0.4 \\
      --distribution poisson --users 200 -o events.parquet

Always exactly --count events, sorted by time in [start, end), at millisecond
resolution. --event-type NAME[:WEIGHT] (repeatable; weights all or none);
--users N (ids user_1..user_N) or --users @FILE (the ids, one per line, e.g. the
id column of a generated users table, so references resolve).

"""


def build_parser(kind: str) -> argparse.ArgumentParser:
    """The parser of ``synth generate KIND``."""
    descriptions = {
        "structured": (
            "Generate records valid against a JSON Schema: each answer is parsed and "
            "validated, invalid ones corrected (the error goes back to the model) or "
            "restarted, and a slot that cannot be filled is counted as failed, never "
            "written.",
            _STRUCTURED_HELP,
        ),
        "timeseries": (
            "Generate a time series: a trend, a seasonal cycle and noise per metric, "
            "computed locally under a seed (--mode local), or with each point annotated "
            "by a model (--mode llm).",
            _TIMESERIES_HELP,
        ),
        "events": (
            "Generate an event stream (ids, times, types, users) computed locally under a "
            "seed (--mode local), or with each event described by a model (--mode llm).",
            _EVENTS_HELP,
        ),
    }
    description, examples = descriptions[kind]
    p = OneLineParser(
        prog=f"synth generate {kind}",
        description=description,
        epilog=examples + _EXIT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if kind == "structured":
        p.add_argument(
            "--schema",
            required=True,
            metavar="FILE",
            help="JSON Schema file of one record, or builtin:users|products|transactions",
        )
    p.add_argument(
        "-n",
        "--count",
        type=int,
        required=kind != "timeseries",
        help="records to make"
        + (" (or derived from --start/--end)" if kind == "timeseries" else ""),
    )
    p.add_argument(
        "-o",
        "--output",
        default="-",
        metavar="FILE",
        help="FILE.jsonl, FILE.csv or FILE.parquet ('-': JSON Lines on stdout)",
    )
    p.add_argument("--seed", type=int, default=0, help="same seed, same records (0)")
    if kind == "structured":
        _structured_arguments(p)
    elif kind == "timeseries":
        _timeseries_arguments(p)
    else:
        _events_arguments(p)
    p.add_argument(
        "--failures",
        metavar="FILE",
        help="also write one JSON line per record that could not be made (slot, reason, "
        "attempts, last output, attributes)",
    )
    p.add_argument("--strict", action="store_true", help="exit 1 if any record could not be made")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress or summary on stderr")
    add_progress_arguments(p)
    add_cache_arguments(p)
    add_metrics_arguments(p)
    add_budget_arguments(p)
    add_shared_limits_argument(p)
    add_generation_arguments(p, json_schema=False, max_tokens=_DEFAULT_MAX_TOKENS)
    p.set_defaults(run=_RUNS[kind], kind=kind, json_schema=None)
    return p


def _structured_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--instructions",
        metavar="TEXT",
        default="",
        help="what the records are about; {NAME} is an --attribute's value (@FILE: read it)",
    )
    p.add_argument(
        "--attribute",
        action="append",
        default=[],
        metavar="NAME=VALUES",
        help="a column sampled per record: a,b,c or a:0.7,b:0.3 or @FILE (repeatable)",
    )
    p.add_argument("--per-call", type=int, default=1, metavar="K", help="records per request (1)")
    p.add_argument(
        "--max-corrections",
        type=int,
        default=2,
        metavar="N",
        help="turns sending an invalid answer back with its errors (2)",
    )
    p.add_argument(
        "--max-restarts",
        type=int,
        default=1,
        metavar="N",
        help="fresh attempts after the corrections run out (1)",
    )
    p.add_argument(
        "--dedup-outputs",
        type=float,
        metavar="JACCARD",
        help="replace records this close to an earlier one (e.g. 0.8) by new samples",
    )


def _mode_arguments(p: argparse.ArgumentParser, content: str) -> None:
    p.add_argument(
        "--mode",
        choices=("local", "llm"),
        default="local",
        help=f"local (default): computed, no model, no key; llm: a model writes {content}",
    )
    llm = p.add_argument_group("--mode llm")
    llm.add_argument(
        "--content-schema",
        metavar="FILE",
        help=f"JSON Schema (an object) of what the model writes per record, instead of {content}",
    )
    llm.add_argument(
        "--instructions",
        metavar="TEXT",
        help="the request to the model, instead of the built-in one (@FILE: read it)",
    )
    llm.add_argument("--per-call", type=int, metavar="K", help="records per request (10)")
    llm.add_argument(
        "--max-corrections", type=int, metavar="N", help="turns correcting an invalid answer (2)"
    )
    llm.add_argument(
        "--max-restarts", type=int, metavar="N", help="fresh attempts after the corrections (1)"
    )


def _timeseries_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--start", metavar="ISO", help="first timestamp, e.g. 2026-01-01T00:00:00Z")
    p.add_argument("--end", metavar="ISO", help="end of the range (excluded)")
    p.add_argument("--interval", metavar="DURATION", help="e.g. 30s, 15m, 1h (default), 1d")
    p.add_argument(
        "--metric",
        action="append",
        default=[],
        metavar="NAME[:OPTIONS]",
        help="a column (repeatable; default: value), e.g. cpu:base=40,scale=20,min=0,max=100",
    )
    p.add_argument(
        "--trend", choices=("up", "down", "stable", "random"), default="stable", help="(stable)"
    )
    p.add_argument(
        "--seasonality",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a daily (hourly data) or weekly (daily data) cycle (on)",
    )
    p.add_argument(
        "--noise", type=float, default=0.1, help="noise sd as a share of the metric's scale (0.1)"
    )
    p.add_argument(
        "--period",
        metavar="DURATION",
        help="the seasonal cycle (1d; 1w for daily data)",
    )
    _mode_arguments(p, "an annotation per point")


def _events_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--start", metavar="ISO", required=True, help="start of the time range")
    p.add_argument("--end", metavar="ISO", required=True, help="end of the time range (excluded)")
    p.add_argument(
        "--event-type",
        action="append",
        default=[],
        dest="event_types",
        metavar="NAME[:WEIGHT]",
        help="an event type, optionally weighted (repeatable)",
    )
    p.add_argument(
        "--distribution",
        choices=("uniform", "poisson", "normal"),
        default="uniform",
        help="event times over the range (uniform)",
    )
    p.add_argument("--users", default="50", metavar="N|@FILE", help="user count or ids (50)")
    p.add_argument(
        "--user-distribution",
        choices=("uniform", "zipf"),
        default="uniform",
        help="uniform (default), or zipf: a few users make most events",
    )
    _mode_arguments(p, "a description and metadata per event")


# -- checks made before anything runs -------------------------------------------------


def _check_common(args: argparse.Namespace) -> None:
    check_range("--count", args.count, low=0)
    check_metrics_arguments(args)
    check_progress_arguments(args)


def _text_arg(flag: str, value: str) -> str:
    """``@FILE`` reads the file (UTF-8); anything else is the text itself."""
    if not value.startswith("@"):
        return value
    path = value[1:]
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise ConfigurationError(f"cannot read {flag} {value}: {os_reason(exc)}") from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"{flag} {value} is not UTF-8 text") from None


def _lines(flag: str, value: str) -> list[str]:
    return [line.strip() for line in _text_arg(flag, value).splitlines() if line.strip()]


def _weighted(flag: str, name: str, items: list[str]) -> list[str] | dict[str, float]:
    """``a,b`` -> a list; ``a:0.7,b:0.3`` -> weights; a mix is refused (ambiguous)."""
    pairs: list[tuple[str, float | None]] = []
    for item in items:
        value, sep, text = item.rpartition(":")
        number: float | None = None
        if sep and value:
            try:
                number = float(text)
            except ValueError:
                number = None
        pairs.append((value.strip(), number) if number is not None else (item, None))
    weights = [w for _, w in pairs if w is not None]
    if not weights:
        return [v for v, _ in pairs]
    if len(weights) != len(pairs):
        raise ConfigurationError(
            f"{flag} {name}: give every value a weight (a:0.7,b:0.3) or none (a,b); "
            "for values holding ':' use @FILE"
        )
    if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise ConfigurationError(f"{flag} {name}: weights must be numbers >= 0, one at least > 0")
    out: dict[str, float] = {}
    for value, weight in pairs:
        if value in out:
            raise ConfigurationError(f"{flag} {name}: value {value!r} is given twice")
        out[value] = float(weight or 0.0)
    return out


def parse_attributes(values: list[str]) -> dict[str, list[str] | dict[str, float]]:
    """``--attribute NAME=VALUES`` flags -> the ``attributes`` argument."""
    out: dict[str, list[str] | dict[str, float]] = {}
    for text in values:
        name, sep, spec = text.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigurationError(
                f"--attribute {text!r}: write NAME=a,b,c or NAME=a:0.7,b:0.3 or NAME=@FILE"
            )
        if not name.isidentifier():
            raise ConfigurationError(
                f"--attribute {name}: a name is letters, digits and _ (it fills {{NAME}} in "
                "--instructions)"
            )
        if name in out:
            raise ConfigurationError(
                f"--attribute {name} is given twice; list all its values in one"
            )
        spec = spec.strip()
        if spec.startswith("@"):
            items = _lines(f"--attribute {name}=", spec)
            if not items:
                raise ConfigurationError(f"--attribute {name}={spec}: the file has no values")
            out[name] = items
            continue
        items = [item.strip() for item in spec.split(",") if item.strip()]
        if not items:
            raise ConfigurationError(f"--attribute {name}= has no values; e.g. {name}=a,b,c")
        out[name] = _weighted("--attribute", name, items)
    return out


def _check_template(instructions: str, attributes: Mapping[str, Any]) -> None:
    """Every ``{NAME}`` in the instructions is an attribute (a typo fails now, not
    after the first request)."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(instructions) if f is not None]
    except ValueError as exc:
        raise ConfigurationError(
            f"--instructions: {exc}; write a literal brace as {{{{ or }}}}"
        ) from None
    for name in fields:
        base = name.split(".")[0].split("[")[0]
        if base not in attributes:
            known = ", ".join(attributes) or "none"
            raise ConfigurationError(
                f"--instructions refers to {{{name}}}, which no --attribute defines "
                f"(attributes: {known}); write a literal brace as {{{{"
            )


@dataclass(slots=True)
class Target:
    """Where rows go: a file (its format from the suffix) or stdout."""

    flag: str
    path: str | None  # None: stdout

    @property
    def name(self) -> str:
        return "<stdout>" if self.path is None else self.path


def check_target(flag: str, value: str) -> Target:
    """Refuse an output that cannot be written, before anything runs; touches nothing
    in an existing file (a file this check creates is removed again)."""
    if value == "-":
        if sys.stdout is None:
            raise ConfigurationError(f"{flag} -: stdout is closed; pass {flag} FILE")
        return Target(flag, None)
    suffix = Path(value).suffix.lower()
    if suffix not in _SUFFIXES:
        raise ConfigurationError(
            f"{flag} {value}: the format comes from the suffix; use .jsonl, .csv or .parquet "
            "(or - for JSON Lines on stdout)"
        )
    if suffix == ".parquet" and importlib.util.find_spec("pyarrow") is None:
        raise ConfigurationError(
            f"{flag} {value}: Parquet needs pyarrow: pip install 'agentic-synth[parquet]', "
            "or write .jsonl / .csv"
        )
    fd, existed = open_to_append(flag, value)
    os.close(fd)
    if not existed:
        os.unlink(value)
    return Target(flag, value)


def _same_file(a: Target, b: Target) -> bool:
    if a.path is None or b.path is None:
        return a.path is None and b.path is None
    return os.path.abspath(a.path) == os.path.abspath(b.path)


# -- progress and the account ---------------------------------------------------------

#: Bottlenecks a dataset job has on purpose, never shown: it sends the same request
#: again for another sample (temperature > 0), which the analyzer takes for a cache miss.
_BY_DESIGN = frozenset({"cache"})


class Progress:
    """``(valid, failed, requested)`` as slots end (the datasets' progress callback),
    into the live display."""

    def __init__(self, display: LiveDisplay, requested: int) -> None:
        self.display = display
        self.requested = requested
        self.valid = 0
        self.failed = 0
        self.started = time.monotonic()

    def __call__(self, valid: int, failed: int, requested: int) -> None:
        self.valid, self.failed, self.requested = valid, failed, requested
        self.display.update(valid, failed, total=requested)

    def clear(self) -> None:
        """End the live view so the summary starts on a clean screen."""
        self.display.finish()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


@dataclass(slots=True)
class Account:
    """What the summary reports: the job's stats (as a dict) and its failures."""

    stats: dict[str, Any]
    failures: list[Any] = field(default_factory=list)
    rows: int = 0
    #: What a computed (--mode local) job made, "points" or "events"; None: records.
    computed: str | None = None


def _summary(account: Account, progress: Progress, target: Target, synth: Synth | None) -> None:
    s = account.stats
    elapsed = progress.elapsed
    corrected = int(s.get("corrected", 0))
    valid = int(s.get("valid", 0)) + corrected  # first-answer valid + corrected: rows kept
    rate = valid / max(elapsed, 1e-9)
    if account.computed is not None:
        say(f"{valid:,} {account.computed} computed in {elapsed:.2f}s ({rate:,.0f}/s)")
        if target.path is not None:
            say(f"wrote {account.rows:,} rows to {target.path}")
        return
    line = f"{valid:,} of {int(s.get('requested', 0)):,} records valid"
    if corrected:
        line += f" ({corrected:,} after corrections)"
    line += f", {int(s.get('failed', 0)):,} failed in {elapsed:.1f}s ({rate:,.0f}/s)"
    say(line)
    if "retries" in s:
        say(
            f"{int(s['retries']):,} correction turns, {int(s.get('restarts', 0)):,} restarts, "
            f"{int(s.get('dropped', 0)):,} near-duplicates replaced; near-duplicate rate "
            f"{float(s.get('near_duplicate_rate', 0.0)):.2%}, distinct-1 "
            f"{float(s.get('distinct_1', 0.0)):.2f}, distinct-2 "
            f"{float(s.get('distinct_2', 0.0)):.2f}"
        )
    tokens_in = int(s.get("input_tokens", 0))
    tokens_out = int(s.get("output_tokens", 0))
    if synth is not None:
        m = synth.metrics()
        tokens_in = tokens_in or m.input_tokens
        tokens_out = tokens_out or m.output_tokens
        cost = float(s.get("cost_usd", 0.0)) or float(getattr(m, "cost_usd", 0.0) or 0.0)
        say(f"tokens in {tokens_in:,}, out {tokens_out:,}; cost ${cost:,.4f}")
        if m.cache is not None:
            say(
                f"cache: {m.cache['hits']:,} replayed, {m.cache['misses']:,} sent "
                f"(hit rate {m.cache['hit_rate'] or 0:.1%})"
            )
        if m.errors_by_class:
            errors = ", ".join(f"{k}: {v}" for k, v in sorted(m.errors_by_class.items()))
            say(f"errors: {errors}")
    if target.path is not None:
        say(f"wrote {account.rows:,} rows to {target.path}")
    for failure in account.failures[:3]:
        say(f"slot {failure.slot} failed: {' '.join(str(failure.reason).split())}")
    if len(account.failures) > 3:
        say(f"... and {len(account.failures) - 3:,} more (--failures FILE writes every one)")


def _failure_line(failure: Any) -> bytes:
    row = {
        "slot": failure.slot,
        "reason": failure.reason,
        "attempts": failure.attempts,
        "last_output": failure.last_output,
        "attributes": failure.attributes,
    }
    return (json.dumps(row, ensure_ascii=False, default=str) + "\n").encode("utf-8", "replace")


def _dumps(row: Mapping[str, Any]) -> bytes:
    return (json.dumps(row, ensure_ascii=False, default=str) + "\n").encode(
        "utf-8", "backslashreplace"
    )


# -- running -------------------------------------------------------------------------


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one error that stopped the job (the rest are the cancellations it caused)."""
    cancelled = anyio.get_cancelled_exc_class()
    stack: list[BaseException] = [group]
    while stack:
        exc = stack.pop()
        if isinstance(exc, BaseExceptionGroup):
            stack.extend(exc.exceptions)
        elif not isinstance(exc, cancelled):
            return exc
    return group


async def _stream_rows(
    results: Callable[[], AsyncIterator[Any]],
    convert: Callable[[Any], tuple[Mapping[str, Any] | None, Any]],
    output: Output,
    progress: Progress,
    account: Account,
) -> None:
    """Write what the async iterator ``results()`` yields, as ``convert`` turns each
    into ``(row | None, failure | None)``, to stdout as JSON Lines, flushing a slow
    trickle every FLUSH_SECONDS.

    The iterator is drained by a task of its own whose only wait is inside the
    iterator: stopping (the reader of stdout gone, Ctrl-C, an error) cancels it
    there, which unwinds a generator holding a task group of its own in the task
    that entered it. Left suspended at a ``yield`` instead, such a generator would
    be closed later from another task, which anyio refuses. The price: rows the
    job makes while stdout is blocked wait in memory here."""
    items: deque[Any] = deque()
    more = anyio.Event()
    drained = False

    async def drain() -> None:
        nonlocal drained
        try:
            async for item in results():
                items.append(item)
                more.set()
        finally:
            drained = True
            more.set()

    end = End.STOPPED
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(output.flush_every, FLUSH_SECONDS)
            tg.start_soon(drain)
            while True:
                while items:
                    row, failure = convert(items.popleft())
                    if row is not None:
                        account.rows += 1
                        if output.add(_dumps(row)):
                            await output.flush()
                    if failure is not None:
                        account.failures.append(failure)
                    progress(account.rows, len(account.failures), progress.requested)
                if drained:
                    break
                more = anyio.Event()  # no await since items was last seen empty
                await more.wait()
            tg.cancel_scope.cancel()
        end = End.COMPLETE
    except BaseExceptionGroup as group:
        error = _single(group)
        if isinstance(error, Exception):
            end = End.FAILED
        raise error from None
    except Exception:
        end = End.FAILED
        raise
    finally:
        output.close(end)


def _run(
    args: argparse.Namespace,
    target: Target,
    synth: Synth | None,
    to_file: Callable[[Progress], Account],
    to_stdout: Callable[[Output, Progress, Account], None],
) -> int:
    """Run to the file or stdout; the failures file and the summary either way."""
    failures_target = None
    if args.failures is not None:
        failures_target = check_target("--failures", args.failures)
        if failures_target.path is None:
            raise ConfigurationError("--failures -: stdout carries the records; name a file")
        if _same_file(failures_target, target):
            raise ConfigurationError("--failures and --output name the same file")
    display = LiveDisplay(args.kind, noun="valid", quiet=args.quiet, every=args.progress_every)
    progress = Progress(display, requested=args.count or 0)
    account = Account(stats={})
    try:
        with serve_job_metrics(args, synth):
            metrics = None if synth is None else synth.metrics
            display.start(args.count, metrics=metrics, ignore=_BY_DESIGN)
            if target.path is None:
                to_stdout(Output.open(target.flag, "-"), progress, account)
                done = account.rows + len(account.failures)
                account.stats = {
                    "requested": progress.requested or done,
                    "valid": account.rows,
                    "failed": len(account.failures),
                    **account.stats,
                }
            else:
                account = to_file(progress)
    except KeyboardInterrupt:
        progress.clear()
        if not args.quiet:
            kept = "stdout has" if target.path is None else f"{target.path} keeps"
            say(
                f"{progress.valid:,} valid, {progress.failed:,} failed before the interrupt; "
                f"{kept} the rows written"
            )
        if synth is not None:
            display.explain(synth.metrics(), ignore=_BY_DESIGN)
        raise
    finally:
        progress.clear()
    if failures_target is not None and failures_target.path is not None:
        out = Output.open("--failures", failures_target.path)
        for failure in account.failures:
            out.add(_failure_line(failure))
        out.close(End.COMPLETE)
    if not args.quiet:
        _summary(account, progress, target, synth)
    if synth is not None:
        display.explain(synth.metrics(), ignore=_BY_DESIGN)
    return 1 if args.strict and account.failures else 0


# -- structured ----------------------------------------------------------------------


def run_structured(args: argparse.Namespace) -> int:
    _check_common(args)
    check_range("--per-call", args.per_call, low=1)
    check_range("--max-corrections", args.max_corrections, low=0)
    check_range("--max-restarts", args.max_restarts, low=0)
    check_range("--dedup-outputs", args.dedup_outputs, low=0, low_open=True, high=1)
    schema = load_schema("--schema", args.schema)
    problems = schema_problems(schema)
    if problems:
        more = f" (and {len(problems) - 1} more: synth validate --schema {args.schema})"
        raise ConfigurationError(
            f"--schema {args.schema} is not a valid record schema: {problems[0]}"
            + (more if len(problems) > 1 else "")
        )
    attributes = parse_attributes(args.attribute)
    instructions = _text_arg("--instructions", args.instructions)
    _check_template(instructions, attributes)
    _check_attributes(attributes, args.seed)
    target = check_target("--output", args.output)
    synth = build_synth(args)
    options: dict[str, Any] = {
        "count": args.count,
        "instructions": instructions,
        "attributes": attributes or None,
        "per_call": args.per_call,
        "max_corrections": args.max_corrections,
        "max_restarts": args.max_restarts,
        "dedup_outputs": args.dedup_outputs,
        "seed": args.seed,
    }

    def to_file(progress: Progress) -> Account:
        assert target.path is not None
        dataset = run_async(_structured_file, synth, schema, options, target.path, progress)
        stats = dataset.stats
        return Account(stats.to_dict(), list(dataset.failures), stats.valid + stats.corrected)

    def to_stdout(output: Output, progress: Progress, account: Account) -> None:
        run_async(_structured_stdout, synth, schema, options, output, progress, account)

    return _run(args, target, synth, to_file, to_stdout)


def _check_attributes(attributes: Mapping[str, Any], seed: int) -> None:
    from ..datasets._attributes import AttributeSampler

    try:
        AttributeSampler(attributes, seed)
    except InvalidRequestError as exc:
        raise ConfigurationError(f"--attribute: {exc}") from None


async def _structured_file(
    synth: Synth, schema: dict[str, Any], options: dict[str, Any], path: str, progress: Progress
) -> Any:
    async with synth, progress.display.ticking():
        return await synth.generate_structured(
            schema, sink=path, keep_records=False, progress=progress, **options
        )


async def _structured_stdout(
    synth: Synth,
    schema: dict[str, Any],
    options: dict[str, Any],
    output: Output,
    progress: Progress,
    account: Account,
) -> None:
    from ..datasets._structured import row_of

    streams: list[Any] = []

    def results() -> Any:
        stream = synth.iter_structured(schema, **options)
        streams.append(stream)
        return stream

    def convert(result: Any) -> tuple[Mapping[str, Any] | None, Any]:
        return (row_of(result) if result.record is not None else None), result.failure

    async with synth, progress.display.ticking():
        try:
            await _stream_rows(results, convert, output, progress, account)
        finally:
            if streams:  # the job's own account: valid/corrected, retries, diversity
                account.stats = streams[0].stats.to_dict()


# -- time series and events ----------------------------------------------------------


def _metric(text: str) -> str | dict[str, Any]:
    """``cpu`` or ``cpu:base=40,scale=20,min=0,max=100,decimals=1``."""
    name, sep, rest = text.partition(":")
    name = name.strip()
    if not name:
        raise ConfigurationError(f"--metric {text!r}: the name is missing, e.g. --metric cpu")
    if not sep:
        return name
    spec: dict[str, Any] = {"name": name}
    for item in rest.split(","):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in ("base", "scale", "min", "max", "decimals"):
            raise ConfigurationError(
                f"--metric {text}: options are base=, scale=, min=, max=, decimals= "
                f"(e.g. {name}:base=40,scale=20), got {item.strip()!r}"
            )
        try:
            number = float(value)
        except ValueError:
            raise ConfigurationError(
                f"--metric {text}: {key} must be a number, got {value!r}"
            ) from None
        spec[key] = int(number) if key == "decimals" and number.is_integer() else number
    return spec


def _local_only(args: argparse.Namespace) -> None:
    """Model flags mean nothing to a computed dataset: refuse them rather than ignore."""
    if args.mode != "local":
        return
    given = [
        flag
        for flag, value in (
            ("-m", args.models),
            ("--config", args.config),
            ("--concurrency", args.concurrency),
            ("--temperature", args.temperature),
            ("--max-tokens", args.max_tokens),
            ("--system", args.system),
            ("--timeout", args.timeout),
            ("--cache", args.cache),
            ("--cache-mode", args.cache_mode),
            ("--sim-latency", args.sim_latency),
            ("--sim-seed", args.sim_seed),
            ("--content-schema", args.content_schema),
            ("--instructions", args.instructions),
            ("--per-call", args.per_call),
            ("--max-corrections", args.max_corrections),
            ("--max-restarts", args.max_restarts),
            ("--metrics-port", args.metrics_port),
        )
        if value is not None and value != []
    ]
    if given:
        raise ConfigurationError(
            f"{given[0]} applies to --mode llm; --mode local computes every value and "
            "sends no request"
        )


def _timeseries_job(args: argparse.Namespace) -> SequenceJob:
    from ..datasets._skeleton import parse_duration, to_utc
    from ..datasets._timeseries import iter_timeseries_local, plan_timeseries

    check_range("--noise", args.noise, low=0)
    start = None if args.start is None else to_utc(args.start, "--start")
    end = None if args.end is None else to_utc(args.end, "--end")
    interval = None if args.interval is None else parse_duration(args.interval, "--interval")
    period = None if args.period is None else parse_duration(args.period, "--period")
    metrics = [_metric(m) for m in args.metric] or ["value"]
    options: dict[str, Any] = {
        "start": args.start,
        "end": args.end,
        "interval": args.interval,
        "metrics": metrics,
        "trend": args.trend,
        "seasonality": args.seasonality,
        "noise": args.noise,
        "period": args.period,
        "seed": args.seed,
    }
    checked = (args.count, start, end, interval, metrics, args.trend, args.seasonality, args.noise)
    try:
        plan = plan_timeseries(*checked, period=period, seed=args.seed)
    except InvalidRequestError as exc:
        raise ConfigurationError(f"timeseries: {exc}") from None
    args.count = plan.count  # derived from --start/--end when not given
    names = [m if isinstance(m, str) else str(m["name"]) for m in metrics]
    return SequenceJob(
        "generate_timeseries",
        {
            **{k: v for k, v in options.items() if v is not None},
            **_llm_options(args, ["timestamp", *names]),
        },
        lambda: iter_timeseries_local(*checked, period=period, seed=args.seed),
        ["timestamp", *names],
        "points",
    )


def _events_job(args: argparse.Namespace) -> SequenceJob:
    from ..datasets._events import iter_events_local, plan_events
    from ..datasets._skeleton import to_utc

    start = to_utc(args.start, "--start")
    end = to_utc(args.end, "--end")
    event_types: list[str] | dict[str, float] | None = None
    if args.event_types:
        event_types = _weighted("--event-type", "", [t.strip() for t in args.event_types])
    users: int | list[str]
    if args.users.startswith("@"):
        users = _lines("--users", args.users)
        if not users:
            raise ConfigurationError(f"--users {args.users}: the file has no ids")
    else:
        try:
            users = int(args.users)
        except ValueError:
            raise ConfigurationError(
                f"--users must be a number of users or @FILE of ids, got {args.users!r}"
            ) from None
        check_range("--users", users, low=1)
    options: dict[str, Any] = {
        "event_types": event_types,
        "distribution": args.distribution,
        "time_range": (args.start, args.end),
        "users": users,
        "user_distribution": args.user_distribution,
        "seed": args.seed,
    }
    checked: dict[str, Any] = {
        "distribution": args.distribution,
        "time_range": (start, end),
        "users": users,
        "user_distribution": args.user_distribution,
        "seed": args.seed,
    }
    if event_types is not None:
        checked["event_types"] = event_types
    try:
        plan_events(args.count, **checked)
    except InvalidRequestError as exc:
        raise ConfigurationError(f"events: {exc}") from None
    sampled = ["event_id", "timestamp", "event_type", "user_id"]  # the model writes the rest
    return SequenceJob(
        "generate_events",
        {**{k: v for k, v in options.items() if v is not None}, **_llm_options(args, sampled)},
        lambda: iter_events_local(args.count, **checked),
        [*sampled, "metadata"],
        "events",
    )


def _llm_options(args: argparse.Namespace, sampled: list[str]) -> dict[str, Any]:
    """The ``--mode llm`` flags as options, checked: a content schema must be a valid
    object schema that leaves the computed fields (``sampled``) alone."""
    if args.mode != "llm":
        return {}
    check_range("--per-call", args.per_call, low=1)
    check_range("--max-corrections", args.max_corrections, low=0)
    check_range("--max-restarts", args.max_restarts, low=0)
    options: dict[str, Any] = {
        "per_call": args.per_call,
        "max_corrections": args.max_corrections,
        "max_restarts": args.max_restarts,
    }
    if args.instructions is not None:
        options["instructions"] = _text_arg("--instructions", args.instructions)
    if args.content_schema is not None:
        flag = f"--content-schema {args.content_schema}"
        schema = load_schema("--content-schema", args.content_schema)
        problems = schema_problems(schema)
        if problems:
            raise ConfigurationError(f"{flag} is not a valid schema: {problems[0]}")
        properties = schema.get("properties")
        if schema.get("type") != "object" or not isinstance(properties, dict) or not properties:
            raise ConfigurationError(
                f"{flag}: the content of a record is an object schema with properties"
            )
        clash = sorted(set(properties) & set(sampled))
        if clash:
            raise ConfigurationError(
                f"{flag} defines {', '.join(clash)}, which are computed, not written by the "
                "model; name the content fields otherwise"
            )
        options["content_schema"] = schema
    return {k: v for k, v in options.items() if v is not None}


#: Rows a local job hands to the sink (or stdout) at a time, and between progress calls.
_CHUNK = 1000


@dataclass(slots=True)
class SequenceJob:
    """A time-series or event job: the Synth method and its options (``--mode llm``),
    and the rows computed here (``--mode local``: no engine, no model, no key)."""

    method: str
    options: dict[str, Any]
    local: Callable[[], Iterator[dict[str, Any]]]
    #: The columns when there is no row to take them from (count 0).
    columns: list[str]
    #: What the rows are, for the summary.
    noun: str


def _run_sequence(args: argparse.Namespace, job: SequenceJob) -> int:
    target = check_target("--output", args.output)
    if args.mode == "local":
        return _run(
            args,
            target,
            None,
            lambda progress: _local_file(job, target, progress),
            lambda output, progress, account: _local_stdout(job, output, progress, account),
        )
    synth = build_synth(args)
    call: dict[str, Any] = {"count": args.count, "mode": "llm", **job.options}

    def to_file(progress: Progress) -> Account:
        assert target.path is not None
        dataset = run_async(_sequence_file, synth, job.method, call, target.path, progress)
        stats = dataset.stats.to_dict()
        # every slot has its row: one whose content failed keeps its computed fields
        return Account(stats, list(dataset.failures), int(stats.get("requested", 0)))

    def to_stdout(output: Output, progress: Progress, account: Account) -> None:
        run_async(_sequence_stdout, synth, job.method, call, output, progress, account)

    return _run(args, target, synth, to_file, to_stdout)


def _chunks(rows: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= _CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _local_file(job: SequenceJob, target: Target, progress: Progress) -> Account:
    """Computed rows to the sink a chunk at a time (memory stays flat); Ctrl-C closes
    the sink as stopped, keeping the rows written."""
    from ..datasets import open_sink

    assert target.path is not None
    rows = job.local()
    first = next(rows, None)
    columns = list(first) if first is not None else job.columns
    written = 0
    with open_sink(target.path, columns) as sink:
        for chunk in _chunks(itertools.chain([] if first is None else [first], rows)):
            sink.write_many(chunk)
            written += len(chunk)
            progress(written, 0, progress.requested)
    stats = {"requested": progress.requested, "valid": written, "failed": 0}
    return Account(stats, [], written, job.noun)


def _local_stdout(job: SequenceJob, output: Output, progress: Progress, account: Account) -> None:
    """Computed rows to stdout as JSON Lines, a chunk per write."""
    end = End.STOPPED
    try:
        account.computed = job.noun
        for chunk in _chunks(job.local()):
            output.write_now(b"".join(_dumps(row) for row in chunk))
            account.rows += len(chunk)
            progress(account.rows, 0, progress.requested)
        end = End.COMPLETE
    finally:
        output.close(end)


async def _sequence_file(
    synth: Synth, method: str, call: dict[str, Any], path: str, progress: Progress
) -> Any:
    async with synth, progress.display.ticking():
        generate = getattr(synth, method)
        return await generate(sink=path, keep_records=False, progress=progress, **call)


async def _sequence_stdout(
    synth: Synth,
    method: str,
    call: dict[str, Any],
    output: Output,
    progress: Progress,
    account: Account,
) -> None:
    async def rows() -> AsyncGenerator[tuple[Mapping[str, Any] | None, Any], None]:
        dataset = await getattr(synth, method)(progress=progress, **call)
        for row in dataset.rows:
            yield row, None
        for failure in dataset.failures:
            yield None, failure

    async with synth, progress.display.ticking():
        await _stream_rows(rows, lambda pair: pair, output, progress, account)


def run_timeseries(args: argparse.Namespace) -> int:
    _check_common(args)
    _local_only(args)
    return _run_sequence(args, _timeseries_job(args))


def run_events(args: argparse.Namespace) -> int:
    _check_common(args)
    _local_only(args)
    return _run_sequence(args, _events_job(args))


_RUNS: dict[str, Callable[[argparse.Namespace], int]] = {
    "structured": run_structured,
    "timeseries": run_timeseries,
    "events": run_events,
}
