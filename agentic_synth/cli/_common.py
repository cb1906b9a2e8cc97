"""Options shared by the subcommands that generate, checked and turned into a Synth.

Everything here runs before an output is opened: a mistake in any flag, the
model list, the schema file or a key stops the command with nothing touched.
"""

from __future__ import annotations

import argparse
import json
import math
import socket
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import anyio

from .._budget import Budget
from .._estimate import CostEstimate, estimate_job
from .._exceptions import ConfigurationError
from .._request import GenerationParams
from .._synth import Synth
from ..caching._cache import Cache
from ._args import bind_problem, check_range
from ._settings import DEFAULT_MAX_TOKENS, add_config_arguments, resolve_settings
from ._streams import say

__all__ = [
    "add_budget_arguments",
    "add_cache_arguments",
    "add_generation_arguments",
    "add_metrics_arguments",
    "add_shared_limits_argument",
    "budget_from",
    "build_synth",
    "check_generation_arguments",
    "check_metrics_arguments",
    "estimate_from_flags",
    "os_reason",
    "request_defaults",
    "run_async",
    "serve_job_metrics",
]

T = TypeVar("T")


def run_async(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run on uvloop where it is installed: it cuts the client's CPU per request."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return anyio.run(fn, *args)
    return anyio.run(fn, *args, backend_options={"use_uvloop": True})


def os_reason(exc: OSError) -> str:
    """``No such file or directory`` rather than ``[Errno 2] No such file ...: 'x'``."""
    return (exc.strerror or str(exc)).lower()


def add_generation_arguments(
    p: argparse.ArgumentParser, *, json_schema: bool = True, max_tokens: int = DEFAULT_MAX_TOKENS
) -> None:
    """The model and request flags; ``max_tokens`` is this command's built-in default
    (used when neither the flag nor the config file sets one)."""
    p.add_argument(
        "-m",
        "--model",
        action="append",
        dest="models",
        metavar="PROVIDER:MODEL",
        help="model to use, in order of preference (repeat for fallbacks; a model the config "
        "file defines takes its settings); default: the config file's models, else "
        "$SYNTH_MODELS, else a provider with a key set, else the simulator",
    )
    p.add_argument("-c", "--concurrency", type=int, help="requests in flight (config, else 64)")
    p.add_argument(
        "--max-tokens", type=int, help=f"output tokens per request (config, else {max_tokens})"
    )
    p.add_argument("--temperature", type=float)
    p.add_argument("--system", help="system prompt for every request")
    p.add_argument("--timeout", type=float, help="seconds per provider call")
    if json_schema:
        p.add_argument(
            "--json-schema", type=Path, metavar="FILE", help="ask for JSON matching this schema"
        )
    p.add_argument(
        "--sim-latency",
        metavar="SPEC",
        help="latency of sim: models, e.g. 0.05, uniform:0.05,0.2 or lognormal:0.1,0.8",
    )
    p.add_argument("--sim-seed", type=int, help="seed of sim: models")
    add_config_arguments(p)
    p.set_defaults(default_max_tokens=max_tokens)


def add_cache_arguments(p: argparse.ArgumentParser) -> None:
    """``--cache``, ``--cache-mode``, ``--memory-limit``: for commands that run jobs."""
    p.add_argument(
        "--cache",
        metavar="PATH",
        help="keep every answer in this SQLite file (or redis://host:port/db): a rerun of "
        "the same job replays what completed and sends only the rest",
    )
    p.add_argument(
        "--cache-mode",
        choices=("samples", "shared"),
        help="samples (default): identical inputs are distinct samples; shared: identical "
        "requests share one answer (temperature-0 work)",
    )
    p.add_argument(
        "--memory-limit",
        metavar="SIZE",
        help="keep the process under this much memory, e.g. 2GB (default: the cgroup's limit)",
    )


def add_metrics_arguments(p: argparse.ArgumentParser) -> None:
    """``--metrics-port``, ``--metrics-host``: Prometheus ``/metrics`` while a job runs."""
    p.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve the job's Prometheus metrics on http://HOST:PORT/metrics while it runs "
        "(0 picks a free port; the URL goes to stderr)",
    )
    p.add_argument(
        "--metrics-host",
        metavar="HOST",
        help="address for --metrics-port (127.0.0.1; 0.0.0.0 opens it to the network)",
    )


def estimate_from_flags(
    args: argparse.Namespace, inputs: Iterable[Any], *, expected_output_tokens: int | None
) -> CostEstimate:
    """``--dry-run``: the job's tokens and cost from the same flags, config file and
    defaults as the real run, without a Synth (no key is needed to count)."""
    check_generation_arguments(args)
    settings = resolve_settings(args)
    specs = settings.specs()
    params = GenerationParams.from_kwargs(
        max_tokens=settings.max_tokens, **request_defaults(args, settings)
    )
    return estimate_job(
        specs,
        params,
        inputs,
        expected_output_tokens=expected_output_tokens,
        mode=getattr(args, "mode", "online"),
    )


def add_budget_arguments(p: argparse.ArgumentParser) -> None:
    """``--budget``, ``--budget-period``, ``--budget-file``: a spending limit."""
    p.add_argument(
        "--budget",
        type=float,
        metavar="USD",
        help="spend at most this much: each request reserves its worst-case cost before it "
        "is sent; once one does not fit, nothing more is sent (those inputs fail unsent)",
    )
    p.add_argument(
        "--budget-period",
        choices=("day", "month"),
        help="the --budget is per UTC day or month, across runs and processes (kept in "
        "--budget-file)",
    )
    p.add_argument(
        "--budget-file",
        metavar="PATH",
        help="the spending ledger shared by runs and processes on this machine (default "
        "with --budget-period: ~/.local/state/agentic-synth/budget.sqlite)",
    )


def add_shared_limits_argument(p: argparse.ArgumentParser) -> None:
    """``--shared-limits``: rate limits held across processes and machines."""
    p.add_argument(
        "--shared-limits",
        metavar="REDIS_URL",
        help="enforce each model's rpm/tpm across every process pointed at this Redis "
        "(redis://host:6379/0); the job refuses to start if Redis or its scripting is "
        "unavailable",
    )


def budget_from(args: argparse.Namespace) -> Budget | None:
    """The :class:`Budget` the flags ask for (``None``: no ``--budget``)."""
    limit = getattr(args, "budget", None)
    period = getattr(args, "budget_period", None)
    path = getattr(args, "budget_file", None)
    if limit is None:
        if period is not None or path is not None:
            flag = "--budget-period" if period is not None else "--budget-file"
            raise ConfigurationError(f"{flag} needs --budget USD, e.g. --budget 25")
        return None
    check_range("--budget", limit, low=0, low_open=True)
    if not math.isfinite(limit):
        raise ConfigurationError("--budget must be a finite number of US dollars, e.g. 25")
    return Budget(limit_usd=limit, period=period, path=path)


def check_metrics_arguments(args: argparse.Namespace) -> None:
    check_range("--metrics-port", args.metrics_port, low=0, high=65535)
    if args.metrics_host is not None and args.metrics_port is None:
        raise ConfigurationError("--metrics-host needs --metrics-port PORT, e.g. 9464")


@contextmanager
def serve_job_metrics(args: argparse.Namespace, synth: Synth | None) -> Iterator[None]:
    """``/metrics`` of ``synth`` while the block runs, when ``--metrics-port`` is given.
    The port is bound on entry: one in use stops the command before the job starts."""
    if synth is None or args.metrics_port is None:
        yield
        return
    from ..monitor import serve_metrics

    host, port = args.metrics_host or "127.0.0.1", args.metrics_port
    try:
        server = serve_metrics(synth, port, host)
    except socket.gaierror as exc:
        raise ConfigurationError(f"--metrics-host {host}: {exc.strerror}") from None
    except OSError as exc:
        raise ConfigurationError(
            bind_problem(exc, host, port, port_flag="--metrics-port", host_flag="--metrics-host")
        ) from None
    with server:
        if not args.quiet:
            say(f"synth: metrics at {server.url}")
        yield


def check_generation_arguments(args: argparse.Namespace) -> None:
    """The flag bounds the engine would otherwise report under its own parameter names."""
    check_range("--concurrency", args.concurrency, low=1)
    check_range("--max-tokens", args.max_tokens, low=1)
    check_range("--temperature", args.temperature, low=0, high=2)
    check_range("--timeout", args.timeout, low=0, low_open=True)


def _json_schema(path: Path) -> dict[str, Any]:
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"cannot read --json-schema {path}: {os_reason(exc)}") from None
    except ValueError as exc:  # bad JSON, or not UTF-8
        raise ConfigurationError(
            f"--json-schema {path} is not a JSON file ({exc}); pass a JSON Schema file"
        ) from None
    if not isinstance(schema, dict):
        raise ConfigurationError(
            f"--json-schema {path} holds a JSON {type(schema).__name__}; a JSON Schema is an object"
        )
    return schema


def request_defaults(args: argparse.Namespace, settings: Any) -> dict[str, Any]:
    """The per-request defaults the flags and the config file set (``Synth(defaults=)``)."""
    defaults: dict[str, Any] = {}
    if settings.temperature is not None:
        defaults["temperature"] = settings.temperature
    if settings.system is not None:
        defaults["system"] = settings.system
    if settings.timeout is not None:
        defaults["timeout"] = settings.timeout
    if args.json_schema is not None:
        defaults["json_schema"] = _json_schema(args.json_schema)
    return defaults


def build_synth(args: argparse.Namespace, **options: Any) -> Synth:
    """Check the shared flags, merge them with the config file and the environment
    (:func:`resolve_settings`) and build the Synth (models resolved, keys found,
    request parameters validated): any mistake raises here, before an output is opened."""
    check_generation_arguments(args)
    settings = resolve_settings(args)
    defaults = request_defaults(args, settings)
    if settings.cache is not None:
        options.setdefault("cache", Cache(("memory", settings.cache), mode=settings.cache_mode))
    if settings.memory_limit is not None:
        options.setdefault("memory_limit", settings.memory_limit)
    budget = budget_from(args)
    if budget is not None:
        options.setdefault("budget", budget)
    shared_limits = getattr(args, "shared_limits", None)
    if shared_limits is not None:
        options.setdefault("shared_limits", shared_limits)
    return Synth(
        settings.specs(),
        max_concurrency=settings.concurrency,
        max_tokens=settings.max_tokens,
        strategy=settings.strategy,
        defaults=defaults,
        **options,
    )
