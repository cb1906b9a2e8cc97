"""The effective settings of a command: flags, then the config file, then the environment,
then built-in defaults, each value with where it came from.

One merge serves the commands that run jobs (which build a Synth from it) and
``synth config`` / ``synth doctor`` (which show it), so what they print is what
a job would use. Nothing here reads a key's value except :meth:`Settings.specs`.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from .._config import PROVIDER_KEY_ENV, Config, ModelEntry, find_config, load_config
from .._exceptions import ConfigurationError
from .._governor import parse_size
from .._spec import ModelSpec, default_models, parse_model
from ..simulator import parse_latency

__all__ = ["ModelChoice", "Settings", "add_config_arguments", "resolve_settings"]

#: Output tokens per request when neither a flag nor the config says (bench: 64).
DEFAULT_MAX_TOKENS = 256
DEFAULT_CONCURRENCY = 64


def add_config_arguments(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--config",
        metavar="FILE",
        help="TOML config file (models, keys' variables, limits, defaults); default: "
        "$SYNTH_CONFIG, else ./synth.toml if present",
    )
    group.add_argument(
        "--no-config",
        action="store_true",
        help="ignore $SYNTH_CONFIG and ./synth.toml",
    )


@dataclass(frozen=True, slots=True)
class ModelChoice:
    """One model a job would use, before its key is read."""

    #: Without a key or secret headers.
    base: ModelSpec
    #: Its [[models]] table, when it comes from the config file.
    entry: ModelEntry | None
    #: Where it came from: ``-m``, the config file's name, ``$SYNTH_MODELS``, ``default``.
    origin: str
    #: Options a flag sets on top of the model's own (``--sim-latency``, ``--sim-seed``).
    overrides: Mapping[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> ModelSpec:
        """The spec as a job would use it, but without its key."""
        return self._override(self.base)

    @property
    def key_env(self) -> str | None:
        """The environment variable its key is read from (None: it needs none)."""
        if self.entry is not None:
            return self.entry.key_env
        return PROVIDER_KEY_ENV.get(self.base.provider)

    def keyed(self, environ: Mapping[str, str] | None = None) -> ModelSpec:
        """The spec with its key and secret headers read from the environment."""
        return self._override(self.base if self.entry is None else self.entry.spec(environ))

    def _override(self, spec: ModelSpec) -> ModelSpec:
        if not self.overrides:
            return spec
        return replace(spec, options={**spec.options, **self.overrides})


@dataclass(slots=True)
class Settings:
    """What a job would run with; ``sources`` says where each value came from."""

    models: list[ModelChoice]
    concurrency: int
    max_tokens: int
    temperature: float | None
    system: str | None
    timeout: float | None
    strategy: str
    cache: str | None
    cache_mode: Literal["samples", "shared"]
    memory_limit: int | None
    config: Config | None
    #: How the config file was found (``--config``, ``$SYNTH_CONFIG``, ``./synth.toml``).
    config_found: str | None
    sources: dict[str, str] = field(default_factory=dict)

    def specs(self, environ: Mapping[str, str] | None = None) -> list[ModelSpec]:
        return [choice.keyed(environ) for choice in self.models]


def _config(args: argparse.Namespace) -> tuple[Config | None, str | None]:
    if getattr(args, "no_config", False):
        return None, None
    found = find_config(getattr(args, "config", None))
    if found is None:
        return None, None
    path, how = found
    return load_config(path), how


def _models(args: argparse.Namespace, config: Config | None) -> list[ModelChoice]:
    """``-m`` flags (a name the config defines takes that table's settings), else the
    config's models, else ``$SYNTH_MODELS`` / a keyed provider / the simulator."""
    flags: list[str] | None = args.models
    if flags:
        choices = []
        for text in flags:
            spec = parse_model(text)
            entries = [e for e in config.models if e.name == spec.name] if config else []
            if entries:
                choices += [ModelChoice(e.bare_spec(), e, "-m") for e in entries]
            else:
                choices.append(ModelChoice(spec, None, "-m"))
        return choices
    if config is not None and config.models:
        return [ModelChoice(e.bare_spec(), e, config.name) for e in config.models]
    origin = "$SYNTH_MODELS" if os.environ.get("SYNTH_MODELS") else "default"
    return [ModelChoice(parse_model(m), None, origin) for m in default_models()]


def _sim_options(args: argparse.Namespace, choices: list[ModelChoice]) -> list[ModelChoice]:
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
        return choices
    if not any(c.base.provider == "sim" for c in choices):
        used = "--sim-latency" if args.sim_latency is not None else "--sim-seed"
        raise ConfigurationError(
            f"{used} applies to sim: models and none is selected; drop it or add -m sim:sim-1"
        )
    return [
        replace(c, overrides={**c.overrides, **options}) if c.base.provider == "sim" else c
        for c in choices
    ]


def resolve_settings(args: argparse.Namespace) -> Settings:
    """Merge flags > config file > environment > built-in defaults (raises
    ConfigurationError naming the flag, or the file, table and key)."""
    config, found = _config(args)
    defaults = config.defaults if config is not None else None
    file = config.name if config is not None else ""
    sources: dict[str, str] = {}

    def pick(name: str, flag: str, flag_value: Any, file_value: Any, builtin: Any) -> Any:
        if flag_value is not None:
            sources[name] = flag
            return flag_value
        if file_value is not None:
            sources[name] = file
            return file_value
        sources[name] = "default"
        return builtin

    has_cache = hasattr(args, "cache")  # commands that run jobs; bench does not cache
    cache = pick(
        "cache",
        "--cache",
        getattr(args, "cache", None),
        defaults.cache if defaults and has_cache else None,
        None,
    )
    memory_flag = getattr(args, "memory_limit", None)
    memory = pick(
        "memory_limit",
        "--memory-limit",
        None if memory_flag is None else _size(memory_flag),
        defaults.memory_limit if defaults and has_cache else None,
        None,
    )
    models = _sim_options(args, _models(args, config))
    sources["models"] = models[0].origin if models else "default"
    return Settings(
        models=models,
        concurrency=pick(
            "concurrency",
            "--concurrency",
            args.concurrency,
            defaults.concurrency if defaults else None,
            DEFAULT_CONCURRENCY,
        ),
        max_tokens=pick(
            "max_tokens",
            "--max-tokens",
            args.max_tokens,
            defaults.max_tokens if defaults else None,
            getattr(args, "default_max_tokens", DEFAULT_MAX_TOKENS),
        ),
        temperature=pick(
            "temperature",
            "--temperature",
            args.temperature,
            defaults.temperature if defaults else None,
            None,
        ),
        system=pick("system", "--system", args.system, defaults.system if defaults else None, None),
        timeout=pick("timeout", "--timeout", args.timeout, None, None),
        strategy=pick("strategy", "", None, defaults.strategy if defaults else None, "priority"),
        cache=cache,
        cache_mode=pick(
            "cache_mode",
            "--cache-mode",
            getattr(args, "cache_mode", None),
            defaults.cache_mode if defaults and has_cache else None,
            "samples",
        ),
        memory_limit=memory,
        config=config,
        config_found=found,
        sources=sources,
    )


def _size(value: str) -> int:
    try:
        return parse_size(value)
    except ConfigurationError:
        raise ConfigurationError(
            f"--memory-limit must be a size such as 512MB or 2GiB, got {value!r}"
        ) from None
