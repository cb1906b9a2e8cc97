"""``synth init`` (a starter synth.toml) and ``synth config`` (the effective configuration).

``synth config`` prints what a job would run with, after merging flags, the config
file and the environment, as TOML that loads back as a config file, each value
with where it came from. Keys are never printed: a model shows the variable its
key is read from and, when it is set, the key masked (``sk-ant-…wxyz``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping
from typing import Any

from .._config import CONFIG_NAME, mask_key, starter_config
from .._exceptions import ConfigurationError
from ._common import add_cache_arguments, add_generation_arguments, os_reason
from ._settings import ModelChoice, Settings, resolve_settings
from ._streams import say

__all__ = ["add_parsers"]

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def add_parsers(sub: Any) -> None:
    init = sub.add_parser(
        "init",
        help="write a commented starter synth.toml",
        description="Write a starter config file: a local vLLM server with Anthropic as the "
        "fallback, every setting explained. Edit it, then check it with synth validate.",
        epilog="exit status: 0 written; 2 the file exists (without --force) or cannot be written.",
    )
    init.add_argument(
        "path",
        nargs="?",
        default=CONFIG_NAME,
        help=f"where to write it ({CONFIG_NAME}; '-': stdout)",
    )
    init.add_argument("--force", action="store_true", help="replace an existing file")
    init.set_defaults(run=run_init)

    config = sub.add_parser(
        "config",
        help="print the effective configuration (keys masked)",
        description="Print what a job would run with: flags, then the config file "
        "(--config, $SYNTH_CONFIG, ./synth.toml), then the environment, then built-in "
        "defaults. The output is TOML a config file can start from; keys are masked.",
        epilog="exit status: 0 printed; 2 a flag or the config file has a problem.",
    )
    config.add_argument("--json", action="store_true", help="print JSON instead of TOML")
    add_cache_arguments(config)
    add_generation_arguments(config)
    config.set_defaults(run=run_config)


# -- synth init ----------------------------------------------------------------------


def run_init(args: argparse.Namespace) -> int:
    text = starter_config().encode()
    if args.path == "-":
        sys.stdout.buffer.write(text)
        sys.stdout.flush()
        return 0
    path: str = args.path
    if os.path.isdir(path):
        raise ConfigurationError(
            f"{path} is a directory; name the file to write, e.g. {path}/synth.toml"
        )
    if os.path.exists(path) and not args.force:
        raise ConfigurationError(f"{path} exists; pass --force to replace it, or name another file")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ConfigurationError(f"{path}: directory {parent} does not exist; create it first")
    # written beside it and renamed: an existing file is replaced whole or not at all
    temp = os.path.join(parent, f".{os.path.basename(path)}.synth-init-{os.getpid()}")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _CLOEXEC, 0o644)
        try:
            os.write(fd, text)
        finally:
            os.close(fd)
        if args.force:
            os.replace(temp, path)
        else:
            os.link(temp, path)  # fails if the file appeared meanwhile: never overwritten
    except FileExistsError:
        raise ConfigurationError(f"{path} exists; pass --force to replace it") from None
    except OSError as exc:
        raise ConfigurationError(f"cannot write {path}: {os_reason(exc)}") from None
    finally:
        if os.path.lexists(temp):
            os.unlink(temp)
    say(f"wrote {path}: edit its models, then check it with: synth validate --config {path}")
    return 0


# -- synth config --------------------------------------------------------------------


def run_config(args: argparse.Namespace) -> int:
    settings = resolve_settings(args)
    if args.json:
        print(json.dumps(effective(settings, args), indent=2, ensure_ascii=False))
    else:
        sys.stdout.write(as_toml(settings, args))
    sys.stdout.flush()
    return 0


#: [defaults] keys in the order they are shown; timeout is a flag only (not in the file).
_SHOWN_DEFAULTS = (
    "max_tokens",
    "temperature",
    "system",
    "concurrency",
    "strategy",
    "cache",
    "cache_mode",
    "memory_limit",
)

#: ModelSpec fields shown for a model, with the value that means "not set".
_MODEL_FIELDS: tuple[tuple[str, Any], ...] = (
    ("weight", 1.0),
    ("rpm", None),
    ("input_tpm", None),
    ("output_tpm", None),
    ("max_in_flight", None),
    ("timeout", 600.0),
    ("input_price", None),
    ("output_price", None),
    ("cache_write_price", None),
    ("cache_write_1h_price", None),
    ("cache_read_price", None),
    ("batch_input_price", None),
    ("batch_output_price", None),
)


def _key_state(variable: str | None) -> dict[str, Any]:
    """Whether the key's variable is set, and the key masked; never the key."""
    if variable is None:
        return {"api_key_env": None, "api_key": None}
    value = (os.environ.get(variable) or "").strip()
    return {"api_key_env": variable, "api_key": mask_key(value) if value else None}


def _base_url(choice: ModelChoice) -> tuple[str | None, str | None]:
    """The base URL a job would use and where it comes from."""
    if choice.spec.base_url is not None:
        return choice.spec.base_url, None
    variable = {"anthropic": "ANTHROPIC_BASE_URL", "openai": "OPENAI_BASE_URL"}.get(
        choice.spec.provider
    )
    value = (os.environ.get(variable) or "").strip() if variable else ""
    return (value, f"${variable}") if value else (None, None)


def _model(choice: ModelChoice) -> dict[str, Any]:
    spec = choice.spec
    url, url_from = _base_url(choice)
    row: dict[str, Any] = {"provider": spec.provider, "model": spec.model, "base_url": url}
    row.update(_key_state(choice.key_env))
    for name, unset in _MODEL_FIELDS:
        row[name] = getattr(spec, name) if getattr(spec, name) != unset else None
    row["options"] = dict(spec.options)
    if choice.entry is not None and choice.entry.headers_env:
        row["headers_env"] = dict(choice.entry.headers_env)
    if spec.verify is not True:
        row["verify"] = spec.verify
    entry = choice.entry
    row["from"] = choice.origin if entry is None else f"{entry.source} [[models]] #{entry.number}"
    if url_from:
        row["base_url_from"] = url_from
    return row


def effective(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    """The effective configuration as plain data (keys masked)."""
    defaults = {name: getattr(settings, name) for name in _SHOWN_DEFAULTS}
    defaults["timeout"] = settings.timeout
    cache = settings.cache
    if cache is not None and "://" not in cache and cache != "memory":
        defaults["cache"] = os.path.abspath(cache)  # the output may be saved anywhere
    return {
        "config_file": settings.config.name if settings.config is not None else None,
        "found_as": settings.config_found,
        "defaults": defaults,
        "sources": {**settings.sources, "timeout": settings.sources.get("timeout", "default")},
        "json_schema": None if args.json_schema is None else str(args.json_schema),
        "models": [_model(choice) for choice in settings.models],
    }


# -- TOML ----------------------------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _toml_string(key)


def _toml_string(text: str) -> str:
    # JSON's escapes are TOML's; DEL is the one control character JSON leaves bare
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, Mapping):
        inner = ", ".join(f"{_toml_key(str(k))} = {_toml_value(v)}" for k, v in value.items())
        return "{" + inner + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return _toml_string(str(value))


def _line(key: str, value: Any, note: str = "") -> str:
    text = f"{_toml_key(key)} = {_toml_value(value)}"
    return f"{text:<40} # {note}\n" if note else text + "\n"


def _tables(path: str, table: Mapping[str, Any]) -> str:
    """Sub-tables (``[models.options]``, ``[models.options.headers]``) of a model."""
    scalars = {k: v for k, v in table.items() if not isinstance(v, Mapping)}
    nested = {k: v for k, v in table.items() if isinstance(v, Mapping)}
    out = f"[{path}]\n" + "".join(_line(k, v) for k, v in scalars.items())
    for key, value in nested.items():
        out += _tables(f"{path}.{_toml_key(key)}", value)
    return out


def as_toml(settings: Settings, args: argparse.Namespace) -> str:
    data = effective(settings, args)
    sources = data["sources"]
    out = "# The effective configuration: flags > config file > environment > built-in defaults.\n"
    if data["config_file"] is not None:
        out += f"# config file: {data['config_file']} (found as {data['found_as']})\n"
    else:
        out += "# config file: none (synth init writes a starter synth.toml)\n"
    out += "\n[defaults]\n"
    for name in _SHOWN_DEFAULTS:
        value = data["defaults"][name]
        source = sources.get(name, "default")
        if value is None:
            out += f"# {name}: not set\n"
        else:
            out += _line(name, value, source)
    if settings.timeout is not None:
        out += (
            f"# timeout: {settings.timeout:g} s per request ({sources['timeout']}; a flag only)\n"
        )
    if data["json_schema"] is not None:
        out += f"# json_schema: {data['json_schema']} (--json-schema; a flag only)\n"
    for row in data["models"]:
        out += f"\n[[models]]{'':<30} # {row['from']}\n"
        out += _line("provider", row["provider"])
        out += _line("model", row["model"])
        if row["base_url"] is not None:
            out += _line("base_url", row["base_url"], row.get("base_url_from", ""))
        if row["api_key_env"] is not None:
            key = row["api_key"]
            state = f"set: {key}" if key is not None else "not set"
            out += _line("api_key_env", row["api_key_env"], state)
        for name, _ in _MODEL_FIELDS:
            if row[name] is not None:
                out += _line(name, row[name])
        if "verify" in row:
            out += _line("verify", row["verify"])
        if row["options"]:
            out += _tables("models.options", row["options"])
        if row.get("headers_env"):
            out += _tables("models.headers_env", row["headers_env"])
    return out
