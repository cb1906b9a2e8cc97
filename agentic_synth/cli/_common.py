"""Options shared by the subcommands that generate, checked and turned into a Synth.

Everything here runs before an output is opened: a mistake in any flag, the
model list, the schema file or a key stops the command with nothing touched.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio

from .._exceptions import ConfigurationError
from .._spec import ModelSpec, default_models, parse_model
from .._synth import Synth
from ..simulator import parse_latency
from ._args import check_range

__all__ = [
    "add_generation_arguments",
    "build_synth",
    "check_generation_arguments",
    "os_reason",
    "run_async",
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


def add_generation_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-m",
        "--model",
        action="append",
        dest="models",
        metavar="PROVIDER:MODEL",
        help="model to use, in order of preference (repeat for fallbacks); "
        "default: $SYNTH_MODELS, else a provider with a key set, else the simulator",
    )
    p.add_argument("-c", "--concurrency", type=int, default=64, help="requests in flight (64)")
    p.add_argument("--max-tokens", type=int, default=256, help="output tokens per request (256)")
    p.add_argument("--temperature", type=float)
    p.add_argument("--system", help="system prompt for every request")
    p.add_argument("--timeout", type=float, help="seconds per provider call")
    p.add_argument(
        "--json-schema", type=Path, metavar="FILE", help="ask for JSON matching this schema"
    )
    p.add_argument(
        "--sim-latency",
        metavar="SPEC",
        help="latency of sim: models, e.g. 0.05, uniform:0.05,0.2 or lognormal:0.1,0.8",
    )
    p.add_argument("--sim-seed", type=int, help="seed of sim: models")


def check_generation_arguments(args: argparse.Namespace) -> None:
    """The flag bounds the engine would otherwise report under its own parameter names."""
    check_range("--concurrency", args.concurrency, low=1)
    check_range("--max-tokens", args.max_tokens, low=1)
    check_range("--temperature", args.temperature, low=0, high=2)
    check_range("--timeout", args.timeout, low=0, low_open=True)


def _model_specs(args: argparse.Namespace) -> list[ModelSpec]:
    specs = [parse_model(m) for m in args.models or default_models()]
    options: dict[str, Any] = {}
    if args.sim_latency is not None:
        try:
            parse_latency(args.sim_latency)
        except ConfigurationError as exc:
            raise ConfigurationError(f"--sim-latency: {exc}") from None
        options["latency"] = args.sim_latency
    if args.sim_seed is not None:
        options["seed"] = args.sim_seed
    if not options:
        return specs
    if not any(s.provider == "sim" for s in specs):
        used = "--sim-latency" if args.sim_latency is not None else "--sim-seed"
        raise ConfigurationError(
            f"{used} applies to sim: models and none is selected; drop it or add -m sim:sim-1"
        )
    return [
        ModelSpec(provider=s.provider, model=s.model, options={**s.options, **options})
        if s.provider == "sim"
        else s
        for s in specs
    ]


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


def build_synth(args: argparse.Namespace, **options: Any) -> Synth:
    """Check the shared flags and build the Synth (models resolved, keys found, request
    parameters validated): any mistake raises here, before an output is opened."""
    check_generation_arguments(args)
    defaults: dict[str, Any] = {}
    if args.temperature is not None:
        defaults["temperature"] = args.temperature
    if args.system is not None:
        defaults["system"] = args.system
    if args.timeout is not None:
        defaults["timeout"] = args.timeout
    if args.json_schema is not None:
        defaults["json_schema"] = _json_schema(args.json_schema)
    return Synth(
        _model_specs(args),
        max_concurrency=args.concurrency,
        max_tokens=args.max_tokens,
        defaults=defaults,
        **options,
    )
