"""The ``synth.toml`` configuration file: models, their limits and prices, and defaults.

The file says which deployments to use (a vLLM server first, an API as the
fallback, say) and the job defaults, so a long command line becomes
``synth generate --config synth.toml ...``. It never holds a key: a model names
the environment variable its key is in (``api_key_env``), and a key-shaped value
anywhere in the file is refused, so the file can be committed and shared.

Every problem is named with the file, the table and the key
(``synth.toml: [[models]] #2: rpm must be a positive number, got "fast"``), and
all of them are collected, so ``synth validate`` lists every one in one pass.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._exceptions import ConfigurationError
from ._governor import parse_size
from ._spec import KNOWN_PROVIDERS, ModelSpec, split_model_name
from .routing._strategy import STRATEGIES

__all__ = [
    "CONFIG_ENV",
    "CONFIG_NAME",
    "PROVIDER_KEY_ENV",
    "Config",
    "ConfigProblems",
    "Defaults",
    "ModelEntry",
    "check_config",
    "find_config",
    "load_config",
    "looks_like_key",
    "mask_key",
    "starter_config",
    "toml_shown",
]

#: The environment variable naming a config file, and the file looked for in the
#: working directory; ``--config`` beats the variable, the variable beats the file.
CONFIG_ENV = "SYNTH_CONFIG"
CONFIG_NAME = "synth.toml"

#: Where a provider's key is read from when a model does not name ``api_key_env``.
PROVIDER_KEY_ENV = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}

#: Above this a price per token is surely a price per million tokens (the dearest
#: model lists about $600 per million output tokens, 6e-4 per token).
_MAX_PRICE_PER_TOKEN = 0.01

_CACHE_MODES = ("samples", "shared")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
#: Shapes of provider keys and bearer tokens (OpenAI, Anthropic, xAI, Groq, Google,
#: Hugging Face, GitHub); a value like this is a secret pasted into the file.
_KEY_SHAPE = re.compile(
    r"\s*(?:bearer\s+)?(?:sk-|sk_|rk-|rk_|xai-|gsk_|AIza|hf_|ghp_|github_pat_)[A-Za-z0-9_\-]{12,}\s*\Z",
    re.IGNORECASE,
)
#: Key names under which people paste secrets; refused in [[models]] and its options.
_SECRET_KEYS = frozenset(
    {"api_key", "apikey", "api-key", "key", "token", "secret", "password", "authorization"}
)
#: Header names that carry credentials: their values come from ``headers_env``.
_SECRET_HEADER = re.compile(r"auth|key|token|secret|cookie|password", re.IGNORECASE)
#: Key prefixes that name the kind of key, not the key: shown by :func:`mask_key`.
_PUBLIC_PREFIXES = ("sk-ant-", "sk-proj-", "sk-")


def looks_like_key(value: str) -> bool:
    """Whether ``value`` has the shape of an API key or bearer token."""
    return bool(_KEY_SHAPE.match(value))


def mask_key(key: str) -> str:
    """``sk-ant-…wxyz``: the kind of key and its last 4 characters, enough to tell
    two keys apart; a short key (where 4 characters are much of it) is ``****``."""
    key = key.strip()
    if len(key) < 20:
        return "****"
    prefix = next((p for p in _PUBLIC_PREFIXES if key.startswith(p)), "")
    return f"{prefix}…{key[-4:]}"


class ConfigProblems(ConfigurationError):
    """A config file with problems; ``problems`` lists every one, each a full sentence
    naming the file, the table and the key. The message is the first of them."""

    def __init__(self, problems: list[str], name: str) -> None:
        self.problems = list(problems)
        more = len(problems) - 1
        suffix = (
            f" (and {more} more problem{'s' if more > 1 else ''}: "
            f"synth validate --config {name} lists them)"
            if more
            else ""
        )
        super().__init__(problems[0] + suffix)


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One ``[[models]]`` table, checked; :meth:`spec` turns it into a ModelSpec."""

    #: 1-based position among the file's ``[[models]]`` tables.
    number: int
    provider: str
    model: str
    base_url: str | None = None
    #: The name of the environment variable holding the key (never the key).
    api_key_env: str | None = None
    weight: float = 1.0
    rpm: float | None = None
    input_tpm: float | None = None
    output_tpm: float | None = None
    max_in_flight: int | None = None
    timeout: float | None = 600.0
    input_price: float | None = None
    output_price: float | None = None
    cache_write_price: float | None = None
    cache_write_1h_price: float | None = None
    cache_read_price: float | None = None
    batch_input_price: float | None = None
    batch_output_price: float | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    #: Header name -> environment variable holding its value (a gateway's own key).
    headers_env: Mapping[str, str] = field(default_factory=dict)
    verify: bool | str = True
    #: The file it came from, for messages.
    source: str = CONFIG_NAME

    @property
    def name(self) -> str:
        return f"{self.provider}:{self.model}"

    @property
    def where(self) -> str:
        return f"{self.source}: [[models]] #{self.number} ({self.name})"

    @property
    def key_env(self) -> str | None:
        """The variable the key is read from: ``api_key_env``, else the provider's usual
        one, except for an OpenAI-compatible server at its own ``base_url`` (vLLM,
        Ollama): it gets a key only from ``api_key_env``, never the OpenAI key."""
        if self.api_key_env is not None:
            return self.api_key_env
        if self.provider == "openai" and self.base_url is not None:
            return None
        return PROVIDER_KEY_ENV.get(self.provider)

    def spec(self, environ: Mapping[str, str] | None = None) -> ModelSpec:
        """The ModelSpec, with the key and header values read from ``environ``
        (default ``os.environ``). A variable the entry names but the environment
        lacks is an error naming both; the provider's usual variable is left to
        :meth:`ModelSpec.resolved`."""
        env = os.environ if environ is None else environ
        # "": no key, and ModelSpec.resolved() does not fill one in from the environment
        key = "" if self.key_env is None and self.provider in PROVIDER_KEY_ENV else None
        if self.api_key_env is not None:
            key = (env.get(self.api_key_env) or "").strip() or None
            if key is None:
                raise ConfigurationError(
                    f"{self.where}: api_key_env names {self.api_key_env}, which is not set; "
                    f"export {self.api_key_env}=... (the key stays out of the file)"
                )
        options = dict(self.options)
        if self.headers_env:
            headers = dict(options.get("headers") or {})
            for header, variable in self.headers_env.items():
                value = env.get(variable)
                if not value:
                    raise ConfigurationError(
                        f"{self.where}: headers_env.{header} names {variable}, which is not set; "
                        f"export {variable}=..."
                    )
                headers[header] = value.strip()
            options["headers"] = headers
        return self._build(key, options)

    def bare_spec(self) -> ModelSpec:
        """The ModelSpec without its key or secret headers, to show or match by name."""
        return self._build(None, dict(self.options))

    def _checked_spec(self) -> ModelSpec:
        """The ModelSpec with stand-ins for the secrets, for checks that must not need
        the environment (a secret header's name is checked, not its value)."""
        options = dict(self.options)
        if self.headers_env:
            options["headers"] = {
                **dict(options.get("headers") or {}),
                **{header: "x" for header in self.headers_env},
            }
        return self._build(None, options)

    def _build(self, key: str | None, options: dict[str, Any]) -> ModelSpec:
        try:
            return ModelSpec(
                provider=self.provider,
                model=self.model,
                base_url=self.base_url,
                api_key=key,
                weight=self.weight,
                rpm=self.rpm,
                input_tpm=self.input_tpm,
                output_tpm=self.output_tpm,
                max_in_flight=self.max_in_flight,
                timeout=self.timeout,
                input_price=self.input_price,
                output_price=self.output_price,
                cache_write_price=self.cache_write_price,
                cache_write_1h_price=self.cache_write_1h_price,
                cache_read_price=self.cache_read_price,
                batch_input_price=self.batch_input_price,
                batch_output_price=self.batch_output_price,
                options=options,
                verify=self.verify,
            )
        except ConfigurationError as exc:
            raise ConfigurationError(f"{self.where}: {exc}") from None


@dataclass(frozen=True, slots=True)
class Defaults:
    """The ``[defaults]`` table: job settings a flag overrides. ``None``: not set."""

    max_tokens: int | None = None
    temperature: float | None = None
    system: str | None = None
    concurrency: int | None = None
    #: A cache file (relative paths are taken from the config file's directory) or URL.
    cache: str | None = None
    cache_mode: str | None = None
    #: Bytes.
    memory_limit: int | None = None
    strategy: str | None = None


@dataclass(frozen=True, slots=True)
class Config:
    """A checked config file."""

    #: The file as the user named it (``synth.toml``, ``conf/prod.toml``).
    name: str
    models: tuple[ModelEntry, ...] = ()
    defaults: Defaults = field(default_factory=Defaults)

    def specs(self, environ: Mapping[str, str] | None = None) -> list[ModelSpec]:
        return [entry.spec(environ) for entry in self.models]


# -- finding the file --------------------------------------------------------------


def find_config(
    explicit: str | None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
) -> tuple[str, str] | None:
    """``(path, how it was found)`` of the config file in effect, or None.

    Order: ``explicit`` (``--config``), then ``$SYNTH_CONFIG``, then ``./synth.toml``.
    A file named explicitly or by the variable must exist (a typo is an error,
    not a silent fallback to no config); ``./synth.toml`` is used when present.
    """
    env = os.environ if environ is None else environ
    if explicit is not None:
        _require_file(explicit, f"--config {explicit}")
        return explicit, "--config"
    named = env.get(CONFIG_ENV, "").strip()
    if named:
        _require_file(named, f"{CONFIG_ENV}={named}")
        return named, f"${CONFIG_ENV}"
    local = Path(cwd or ".") / CONFIG_NAME
    if local.is_file():
        return (CONFIG_NAME if cwd is None else str(local)), f"./{CONFIG_NAME}"
    return None


def _require_file(path: str, what: str) -> None:
    if os.path.isdir(path):
        raise ConfigurationError(f"{what} is a directory; name a TOML file (synth init writes one)")
    if not os.path.exists(path):
        raise ConfigurationError(
            f"{what}: no such file; check the path, or write a starter one with synth init"
        )


# -- loading and checking ------------------------------------------------------------


def load_config(path: str) -> Config:
    """Read and check ``path``; raises :class:`ConfigProblems` listing every problem."""
    config, problems = check_config(path)
    if problems or config is None:
        raise ConfigProblems(problems or [f"{path}: unreadable"], path)
    return config


def check_config(path: str) -> tuple[Config | None, list[str]]:
    """``(config, problems)``: the config is None when there is any problem."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        return None, [f"{path}: cannot read: {(exc.strerror or str(exc)).lower()}"]
    except UnicodeDecodeError:
        return None, [f"{path}: not UTF-8 text; save it as UTF-8"]
    except tomllib.TOMLDecodeError as exc:
        return None, [f"{path}: not valid TOML: {exc}"]
    return parse_config(data, path)


def parse_config(data: Mapping[str, Any], name: str) -> tuple[Config | None, list[str]]:
    """Check parsed TOML; ``name`` is the file named in messages."""
    checker = _Checker(name)
    config = checker.config(data)
    return (None, checker.problems) if checker.problems else (config, [])


def toml_shown(value: Any) -> str:
    """A value as it is written in TOML, for messages (strings in double quotes)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return str(value)


def _suggest(key: str, known: tuple[str, ...], what: str = "keys") -> str:
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else f"; known {what}: {', '.join(sorted(known))}"


_MODEL_KEYS = (
    "provider",
    "model",
    "base_url",
    "api_key_env",
    "weight",
    "rpm",
    "input_tpm",
    "output_tpm",
    "max_in_flight",
    "timeout",
    "input_price",
    "output_price",
    "cache_write_price",
    "cache_write_1h_price",
    "cache_read_price",
    "batch_input_price",
    "batch_output_price",
    "options",
    "headers_env",
    "verify",
)
_DEFAULT_KEYS = (
    "max_tokens",
    "temperature",
    "system",
    "concurrency",
    "cache",
    "cache_mode",
    "memory_limit",
    "strategy",
)
_TABLES = ("models", "defaults")


class _Checker:
    """Collects every problem of one file, each named with the table and key."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.problems: list[str] = []

    def problem(self, where: str, message: str) -> None:
        self.problems.append(f"{self.name}: {where}{': ' if where else ''}{message}")

    def config(self, data: Mapping[str, Any]) -> Config:
        for key in data:
            if key not in _TABLES:
                self.problem("", f"unknown table [{key}]{_suggest(key, _TABLES, 'tables')}")
        models: list[ModelEntry] = []
        raw_models = data.get("models", [])
        if not isinstance(raw_models, list):
            self.problem(
                "",
                "models must be [[models]] tables (one per model, double brackets), "
                f"got {toml_shown(raw_models)}",
            )
        else:
            for number, table in enumerate(raw_models, 1):
                entry = self.model(number, table)
                if entry is not None:
                    models.append(entry)
            self.repeats(models)
        raw_defaults = data.get("defaults", {})
        if not isinstance(raw_defaults, Mapping):
            self.problem("", f"defaults must be a [defaults] table, got {toml_shown(raw_defaults)}")
            defaults = Defaults()
        else:
            defaults = self.defaults(raw_defaults)
        return Config(name=self.name, models=tuple(models), defaults=defaults)

    # -- [[models]] ------------------------------------------------------------------

    def model(self, number: int, table: Any) -> ModelEntry | None:
        where = f"[[models]] #{number}"
        if not isinstance(table, Mapping):
            self.problem(where, f"must be a table, got {toml_shown(table)}")
            return None
        before = len(self.problems)
        provider, model = self.model_name(where, table)
        variable = PROVIDER_KEY_ENV.get(provider or "", "MY_KEY_VARIABLE")
        for key in table:
            if key.lower() in _SECRET_KEYS:
                self.problem(
                    where,
                    f"{key} holds a secret in the file; put the key in an environment variable "
                    f'and name the variable instead: api_key_env = "{variable}"',
                )
            elif key not in _MODEL_KEYS:
                self.problem(where, f"unknown key {key}{_suggest(key, _MODEL_KEYS)}")
        values: dict[str, Any] = {}
        base_url = table.get("base_url")
        if base_url is not None:
            if not isinstance(base_url, str) or not re.match(r"https?://\S+\Z", base_url.strip()):
                self.problem(
                    where,
                    "base_url must be an http:// or https:// URL such as "
                    f'"http://localhost:8000/v1", got {self.safe(base_url)}',
                )
            else:
                values["base_url"] = base_url.strip()
        key_env = table.get("api_key_env")
        if key_env is not None:
            if self.env_name(where, "api_key_env", key_env):
                values["api_key_env"] = key_env
        for key in ("rpm", "input_tpm", "output_tpm", "timeout", "weight"):
            if key in table:
                number_ = self.number(where, key, table[key], positive=True)
                if number_ is not None:
                    values[key] = number_
        if "max_in_flight" in table:
            count = self.integer(where, "max_in_flight", table["max_in_flight"], low=1)
            if count is not None:
                values["max_in_flight"] = count
        for key in (
            "input_price",
            "output_price",
            "cache_write_price",
            "cache_write_1h_price",
            "cache_read_price",
            "batch_input_price",
            "batch_output_price",
        ):
            if key in table:
                price = self.price(where, key, table[key])
                if price is not None:
                    values[key] = price
        options = table.get("options", {})
        if not isinstance(options, Mapping):
            self.problem(
                where, f"options must be a table ([models.options]), got {toml_shown(options)}"
            )
        else:
            self.secrets(where, "options", options)
            values["options"] = dict(options)
        headers_env = table.get("headers_env", {})
        if not isinstance(headers_env, Mapping):
            self.problem(
                where,
                f"headers_env must be a table of header = VARIABLE, got {toml_shown(headers_env)}",
            )
        else:
            for header, variable in headers_env.items():
                self.env_name(where, f"headers_env.{header}", variable)
            values["headers_env"] = dict(headers_env)
        verify = table.get("verify", True)
        if not isinstance(verify, bool | str):
            self.problem(
                where,
                f"verify must be true, false or the path of a CA bundle, got {toml_shown(verify)}",
            )
        else:
            values["verify"] = verify
        if provider is None or model is None or len(self.problems) > before:
            return None
        entry = ModelEntry(
            number=number, provider=provider, model=model, source=self.name, **values
        )
        self.engine_checks(entry)
        return entry

    def model_name(self, where: str, table: Mapping[str, Any]) -> tuple[str | None, str | None]:
        """``model = "provider:model"``, or ``provider`` and ``model`` apart (then the
        model name is taken as written: Ollama's ``llama3:8b`` keeps its colon)."""
        model = table.get("model")
        provider = table.get("provider")
        if model is None:
            self.problem(where, 'model is missing; e.g. model = "anthropic:claude-haiku-4-5"')
            return None, None
        if not isinstance(model, str) or not model.strip():
            self.problem(where, f"model must be a model name, got {self.safe(model)}")
            return None, None
        if provider is not None:
            if not isinstance(provider, str) or provider.strip().lower() not in KNOWN_PROVIDERS:
                self.problem(
                    where,
                    f"provider must be one of {', '.join(KNOWN_PROVIDERS)} (openai for any "
                    f"OpenAI-compatible server: vLLM, Ollama, ...), got {self.safe(provider)}",
                )
                return None, None
            return provider.strip().lower(), model.strip()
        try:
            return split_model_name(model)
        except ConfigurationError as exc:
            self.problem(where, f"model: {exc}")
            return None, None

    def repeats(self, models: list[ModelEntry]) -> None:
        seen: dict[tuple[str, str | None], int] = {}
        for entry in models:
            ident = (entry.name, entry.base_url)
            if ident in seen:
                self.problem(
                    f"[[models]] #{entry.number}",
                    f"{entry.name} at {entry.base_url or 'its default URL'} repeats "
                    f"[[models]] #{seen[ident]}; give each its own base_url or remove one",
                )
            else:
                seen[ident] = entry.number

    def engine_checks(self, entry: ModelEntry) -> None:
        """What the engine checks when it builds the model (ModelSpec, provider options)."""
        from .providers import validate_spec

        try:
            validate_spec(entry._checked_spec())
        except ConfigurationError as exc:
            message = str(exc)
            prefix = f"{entry.where}: "
            self.problems.append(message if message.startswith(prefix) else prefix + message)

    def secrets(self, where: str, path: str, table: Mapping[str, Any]) -> None:
        """Refuse secrets anywhere under a model's options (nested tables, headers)."""
        for key, value in table.items():
            inner = f"{path}.{key}"
            if isinstance(value, Mapping):
                self.secrets(where, inner, value)
            elif isinstance(value, str) and (
                looks_like_key(value)
                or key.lower() in _SECRET_KEYS
                or (path.endswith(".headers") and _SECRET_HEADER.search(key))
            ):
                hint = (
                    f'send it with headers_env.{key} = "VARIABLE" instead'
                    if path.endswith(".headers")
                    else 'name the variable holding it: api_key_env = "VARIABLE"'
                )
                self.problem(
                    where,
                    f"{inner} holds a secret in the file (not shown); keys stay in the "
                    f"environment: {hint}",
                )

    def env_name(self, where: str, key: str, value: Any) -> bool:
        if isinstance(value, str) and _ENV_NAME.match(value):
            return True
        if isinstance(value, str) and looks_like_key(value):
            self.problem(
                where,
                f"{key} holds what looks like a key itself (not shown); it takes the NAME of "
                'the environment variable holding the key, e.g. "ANTHROPIC_API_KEY"',
            )
        else:
            self.problem(
                where,
                f"{key} must be the name of an environment variable (letters, digits, _), "
                f'e.g. "ANTHROPIC_API_KEY"; got {self.safe(value)}',
            )
        return False

    def safe(self, value: Any) -> str:
        """A value for a message, unless it might be a secret."""
        if isinstance(value, str) and looks_like_key(value):
            return "a key-shaped value (not shown)"
        return toml_shown(value)

    # -- values ----------------------------------------------------------------------

    def number(self, where: str, key: str, value: Any, *, positive: bool) -> float | None:
        ok = (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
            and (value > 0 if positive else value >= 0)
        )
        if not ok:
            want = "a positive number" if positive else "a number >= 0"
            self.problem(where, f"{key} must be {want}, got {self.safe(value)}")
            return None
        return float(value)

    def integer(
        self, where: str, key: str, value: Any, *, low: int, high: int | None = None
    ) -> int | None:
        if (
            isinstance(value, int)
            and not isinstance(value, bool)
            and value >= low
            and (high is None or value <= high)
        ):
            return value
        want = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
        self.problem(where, f"{key} must be {want}, got {self.safe(value)}")
        return None

    def price(self, where: str, key: str, value: Any) -> float | None:
        price = self.number(where, key, value, positive=False)
        if price is not None and price > _MAX_PRICE_PER_TOKEN:
            self.problem(
                where,
                f"{key} is USD per token, and {toml_shown(value)} per token is more than any model "
                f"costs; for ${toml_shown(value)} per million tokens write {price / 1e6:.6g}",
            )
            return None
        return price

    def choice(self, where: str, key: str, value: Any, options: tuple[str, ...]) -> str | None:
        if isinstance(value, str) and value in options:
            return value
        self.problem(where, f"{key} must be one of {', '.join(options)}, got {self.safe(value)}")
        return None

    # -- [defaults] ------------------------------------------------------------------

    def defaults(self, table: Mapping[str, Any]) -> Defaults:
        where = "[defaults]"
        for key in table:
            if key not in _DEFAULT_KEYS:
                self.problem(where, f"unknown key {key}{_suggest(key, _DEFAULT_KEYS)}")
        values: dict[str, Any] = {}
        checks: dict[str, Callable[[Any], Any]] = {
            "max_tokens": lambda v: self.integer(where, "max_tokens", v, low=1),
            "concurrency": lambda v: self.integer(where, "concurrency", v, low=1),
            "temperature": lambda v: self.temperature(where, v),
            "system": lambda v: self.text(where, "system", v),
            "cache": lambda v: self.cache(where, v),
            "cache_mode": lambda v: self.choice(where, "cache_mode", v, _CACHE_MODES),
            "memory_limit": lambda v: self.size(where, v),
            "strategy": lambda v: self.choice(where, "strategy", v, STRATEGIES),
        }
        for key, check in checks.items():
            if key in table:
                checked = check(table[key])
                if checked is not None:
                    values[key] = checked
        return Defaults(**values)

    def temperature(self, where: str, value: Any) -> float | None:
        number = self.number(where, "temperature", value, positive=False)
        if number is not None and number > 2:
            self.problem(where, f"temperature must be in [0, 2], got {toml_shown(value)}")
            return None
        return number

    def text(self, where: str, key: str, value: Any) -> str | None:
        if isinstance(value, str):
            return value
        self.problem(where, f"{key} must be a string, got {toml_shown(value)}")
        return None

    def cache(self, where: str, value: Any) -> str | None:
        if not isinstance(value, str) or not value.strip():
            self.problem(
                where,
                'cache must be a file path such as "runs/cache.db" or a redis:// URL, '
                f"got {self.safe(value)}",
            )
            return None
        if "://" in value or value == "memory" or os.path.isabs(value):
            return value
        # relative to the file, so the same config works from any directory
        return os.path.normpath(os.path.join(os.path.dirname(self.name), value))

    def size(self, where: str, value: Any) -> int | None:
        try:
            return parse_size(value)
        except ConfigurationError:
            self.problem(
                where,
                'memory_limit must be a size such as "512MB" or "2GiB" (or a number of bytes), '
                f"got {toml_shown(value)}",
            )
            return None


# -- the starter file ----------------------------------------------------------------


def starter_config() -> str:
    """The commented file ``synth init`` writes: a local vLLM server first, Anthropic as
    the fallback when it fails or is overloaded. It passes ``synth validate``."""
    return _STARTER


_STARTER = """\
# synth.toml: models and defaults for the synth command line.
#
# Found as --config FILE, else $SYNTH_CONFIG, else ./synth.toml. A flag beats this
# file, and this file beats the environment ($SYNTH_MODELS) and built-in defaults.
# `synth config` prints the result of that merge; `synth validate` checks this file.
#
# Keys never go in this file: each model names the environment variable that holds
# its key (api_key_env). A key written here is refused.

[defaults]
max_tokens = 512          # output tokens per request
temperature = 0.8         # 0..2
concurrency = 128         # requests in flight across all models
# system = "You write realistic, varied synthetic data."
# cache = "synth-cache.db"  # keep every answer: a rerun resumes (relative to this file)
# cache_mode = "samples"    # or "shared": identical requests share one answer
# memory_limit = "4GB"      # keep the process under this (default: the cgroup's limit)
# strategy = "priority"     # models in order: the next one is used when one fails or is saturated

# Models, in order of preference. With strategy "priority" the second is the fallback
# when the first errors, times out or hits its limits.

[[models]]
# A local vLLM (or Ollama, llama.cpp, TGI...) server speaking the OpenAI API.
provider = "openai"
model = "meta-llama/Llama-3.1-8B-Instruct"   # the name the server knows it by
base_url = "http://localhost:8000/v1"
# api_key_env = "VLLM_API_KEY"    # only if the server was started with --api-key
max_in_flight = 256               # the server's own batch limit
timeout = 120                     # seconds per call
input_price = 0.0                 # USD per token: 0 for your own hardware (a model
output_price = 0.0                #   missing from the price table has no cost otherwise)

[[models]]
# The fallback: Anthropic's API. The key is read from the variable named here.
model = "anthropic:claude-haiku-4-5"
api_key_env = "ANTHROPIC_API_KEY"
rpm = 4000                        # your account's requests per minute
input_tpm = 400000                # input tokens per minute
output_tpm = 80000                # output tokens per minute
timeout = 120
# prices come from the shipped price table (USD per token; override if yours differ):
# input_price = 1.0e-6            # $1 per million input tokens
# output_price = 5.0e-6           # $5 per million output tokens
# batch_input_price = 0.5e-6      # through the Message Batches API

# Provider options go in a [models.options] table under their model, e.g.
# connect_timeout = 5. A gateway header whose value is a secret is read from the
# environment like the key:
# [models.headers_env]
# X-Gateway-Key = "GATEWAY_KEY"

# The embedded simulator needs no key or network, for trying things out:
# [[models]]
# model = "sim:sim-1"
# [models.options]
# latency = "uniform:0.05,0.2"
# seed = 7
"""
