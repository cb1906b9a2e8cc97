"""Options shared by the subcommands that generate."""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio

from .._exceptions import ConfigurationError
from .._spec import ModelSpec, default_models, parse_model

__all__ = ["add_generation_arguments", "generation_params", "model_specs", "run_async"]

T = TypeVar("T")


def run_async(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run on uvloop where it is installed: it cuts the client's CPU per request."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return anyio.run(fn, *args)
    return anyio.run(fn, *args, backend_options={"use_uvloop": True})


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


def model_specs(args: argparse.Namespace) -> list[ModelSpec]:
    names = args.models or default_models()
    specs = [parse_model(m) for m in names]
    options: dict[str, Any] = {}
    if args.sim_latency is not None:
        options["latency"] = args.sim_latency
    if args.sim_seed is not None:
        options["seed"] = args.sim_seed
    if options:
        specs = [
            ModelSpec(provider=s.provider, model=s.model, options={**s.options, **options})
            if s.provider == "sim"
            else s
            for s in specs
        ]
    return specs


def generation_params(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {"max_tokens": args.max_tokens}
    if args.temperature is not None:
        params["temperature"] = args.temperature
    if args.system is not None:
        params["system"] = args.system
    if args.timeout is not None:
        params["timeout"] = args.timeout
    if args.json_schema is not None:
        try:
            params["json_schema"] = json.loads(args.json_schema.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigurationError(
                f"cannot read --json-schema {args.json_schema}: {exc}; pass a JSON Schema file"
            ) from exc
    return params
