"""``synth validate``: check a config file and/or a record schema, naming each problem.

A schema is checked the way a job checks it before sending anything (its
metaschema, references, regexes, whether any record could satisfy it), so a
schema that passes here is one ``synth generate structured`` accepts.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .._config import check_config, find_config
from .._exceptions import ConfigurationError, InvalidRequestError
from ._common import os_reason
from ._streams import say

__all__ = ["add_parser", "load_schema", "schema_problems"]

BUILTIN_PREFIX = "builtin:"


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "validate",
        help="check a config file and/or a record schema",
        description="Check a config file (default: the one in effect: $SYNTH_CONFIG, else "
        "./synth.toml) and/or a JSON Schema file, listing every problem on stderr.",
        epilog="exit status: 0 everything checked is fine; 2 a problem was found.",
    )
    p.add_argument("--config", metavar="FILE", help="the config file to check")
    p.add_argument(
        "--schema",
        metavar="FILE",
        help="a JSON Schema file (or builtin:users|products|transactions) to check",
    )
    p.set_defaults(run=run)


def load_schema(flag: str, value: str) -> dict[str, Any]:
    """The schema ``value`` names: ``builtin:NAME`` or a JSON file (raises
    ConfigurationError naming ``flag`` when it cannot be read or is not JSON)."""
    if value.startswith(BUILTIN_PREFIX):
        from ..datasets import BUILTIN_SCHEMAS, builtin_schema

        name = value[len(BUILTIN_PREFIX) :]
        if name not in BUILTIN_SCHEMAS:
            raise ConfigurationError(
                f"{flag} {value}: no such built-in schema; use one of "
                + ", ".join(BUILTIN_PREFIX + n for n in sorted(BUILTIN_SCHEMAS))
            )
        return builtin_schema(name)
    try:
        with open(value, encoding="utf-8") as f:
            schema = json.load(f)
    except IsADirectoryError:
        raise ConfigurationError(
            f"{flag} {value} is a directory; name a JSON Schema file"
        ) from None
    except OSError as exc:
        raise ConfigurationError(f"cannot read {flag} {value}: {os_reason(exc)}") from None
    except json.JSONDecodeError as exc:
        raise ConfigurationError(
            f"{flag} {value} is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"{flag} {value} is not UTF-8 text; save it as UTF-8") from None
    if not isinstance(schema, dict):
        raise ConfigurationError(
            f"{flag} {value} holds a JSON {_json_kind(schema)}; a record schema is an object "
            'such as {"type": "object", "properties": {...}}'
        )
    return schema


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {list: "array", str: "string", type(None): "null"}.get(type(value), "value")


def schema_problems(schema: dict[str, Any]) -> list[str]:
    """Every problem a job would refuse ``schema`` for (empty: it is fine)."""
    from ..datasets import SchemaSpec

    try:
        SchemaSpec.of(schema)
    except InvalidRequestError as exc:
        lines = str(exc).splitlines()
        items = [line[2:] for line in lines if line.startswith("- ")]
        return items or [" ".join(lines)]
    return []


def run(args: argparse.Namespace) -> int:
    checked: list[str] = []
    problems: list[str] = []
    config = args.config
    if config is None and args.schema is None:
        found = find_config(None)
        if found is None:
            raise ConfigurationError(
                "no config file to check (no --config, $SYNTH_CONFIG or ./synth.toml); "
                "pass --config FILE or --schema FILE, or write one with synth init"
            )
        config = found[0]
    if config is not None:
        loaded, found_problems = check_config(config)
        problems += found_problems
        if loaded is not None:
            count = len(loaded.models)
            checked.append(f"{config}: ok ({count} model{'s' if count != 1 else ''})")
    if args.schema is not None:
        try:
            schema = load_schema("--schema", args.schema)
        except ConfigurationError as exc:
            problems.append(str(exc))
        else:
            found_problems = schema_problems(schema)
            problems += [f"{args.schema}: {p}" for p in found_problems]
            if not found_problems:
                checked.append(f"{args.schema}: ok (a valid record schema)")
    for line in checked:
        print(line)
    sys.stdout.flush()
    for problem in problems:
        say(problem)
    if problems:
        say(f"synth: {len(problems)} problem{'s' if len(problems) != 1 else ''} found")
        return 2
    return 0
