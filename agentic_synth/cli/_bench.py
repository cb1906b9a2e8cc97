"""``synth bench``: measure the engine end to end and fail on regressions.

Meant for CI performance jobs: ``--min-throughput``, ``--max-p99``,
``--max-cpu-us`` and ``--max-error-rate`` turn the figures into an exit code.
Flags, models and the ``--json`` path are checked before the run, so a long
benchmark never fails at the end for a typo.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from .._synth import Synth
from ._args import check_range
from ._common import add_generation_arguments, build_synth, run_async
from ._output import End, Output
from ._streams import say

__all__ = ["add_parser", "run_bench"]


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "bench",
        help="measure throughput, latency and CPU per request",
        description="Run N generated prompts through the engine and report the figures "
        "(on the embedded simulator unless --model says otherwise).",
        epilog="exit status: 0 within the thresholds; 1 a threshold failed; 2 a usage problem.",
    )
    p.add_argument("-n", "--requests", type=int, default=2000, help="requests to send (2000)")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    p.add_argument("--min-throughput", type=float, metavar="REQ_S")
    p.add_argument("--max-p99", type=float, metavar="SECONDS")
    p.add_argument("--max-cpu-us", type=float, metavar="US", help="CPU microseconds per request")
    p.add_argument("--max-error-rate", type=float, metavar="FRACTION")
    add_generation_arguments(p, max_tokens=64)
    p.set_defaults(run=run)


async def run_bench(synth: Synth, requests: int, params: dict[str, Any]) -> dict[str, Any]:
    """Send ``requests`` distinct prompts; return throughput, latency, CPU figures."""
    prompts = (f"Write one sentence about topic {i}." for i in range(requests))
    async with synth:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        results = await synth.generate_batch(prompts, **params)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        m = synth.metrics()
    failed = sum(1 for r in results if not r.ok)
    return {
        "requests": requests,
        "concurrency": synth.max_concurrency,
        "models": synth.models,
        "seconds": wall,
        "throughput": requests / wall if wall > 0 else 0.0,
        "cpu_us_per_request": cpu / requests * 1e6 if requests else 0.0,
        "error_rate": failed / requests if requests else 0.0,
        "latency_p50": m.latency_p50,
        "latency_p95": m.latency_p95,
        "latency_p99": m.latency_p99,
        "input_tokens": m.input_tokens,
        "output_tokens": m.output_tokens,
        "errors_by_class": m.errors_by_class,
    }


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def _check(args: argparse.Namespace) -> None:
    check_range("--requests", args.requests, low=1)
    check_range("--min-throughput", args.min_throughput, low=0, low_open=True)
    check_range("--max-p99", args.max_p99, low=0, low_open=True)
    check_range("--max-cpu-us", args.max_cpu_us, low=0, low_open=True)
    check_range("--max-error-rate", args.max_error_rate, low=0, high=1)


def run(args: argparse.Namespace) -> int:
    _check(args)
    synth = build_synth(args)
    report = None if args.json is None else Output.open("--json", args.json)
    end = End.FAILED  # an unfinished run leaves an old report as it was
    try:
        figures = run_async(run_bench, synth, args.requests, {})
        if report is not None:
            report.add(json.dumps(figures, indent=2).encode() + b"\n")
            end = End.COMPLETE
    finally:
        if report is not None:
            report.close(end)
    print(
        f"{figures['requests']} requests at concurrency {figures['concurrency']} "
        f"on {', '.join(figures['models'])}\n"
        f"  throughput   {figures['throughput']:,.0f} req/s ({figures['seconds']:.2f} s)\n"
        f"  latency      p50 {_ms(figures['latency_p50'])}, p95 {_ms(figures['latency_p95'])}, "
        f"p99 {_ms(figures['latency_p99'])}\n"
        f"  CPU          {figures['cpu_us_per_request']:.1f} us/request\n"
        f"  errors       {figures['error_rate']:.2%}",
        flush=True,
    )
    failures = []
    if args.min_throughput is not None and figures["throughput"] < args.min_throughput:
        failures.append(f"throughput {figures['throughput']:.0f} < {args.min_throughput:g} req/s")
    p99 = figures["latency_p99"]
    if args.max_p99 is not None and (p99 is None or p99 > args.max_p99):
        failures.append(f"p99 latency {p99} > {args.max_p99:g} s")
    if args.max_cpu_us is not None and figures["cpu_us_per_request"] > args.max_cpu_us:
        failures.append(f"CPU {figures['cpu_us_per_request']:.1f} > {args.max_cpu_us:g} us/request")
    if args.max_error_rate is not None and figures["error_rate"] > args.max_error_rate:
        failures.append(f"error rate {figures['error_rate']:.4f} > {args.max_error_rate:g}")
    for failure in failures:
        say(f"FAIL: {failure}")
    return 1 if failures else 0
