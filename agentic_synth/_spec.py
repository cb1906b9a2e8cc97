"""Model specifications: which provider and model, where, with what key and limits.

A model is named ``provider:model`` (``anthropic:claude-haiku-4-5``,
``openai:llama-3.1-8b``, ``sim:sim-1``). A :class:`ModelSpec` adds the
deployment (base URL, key) and the per-model limits the router uses, so two
deployments of one provider are two entries.
"""

from __future__ import annotations

import math
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ._exceptions import ConfigurationError

__all__ = [
    "KNOWN_PROVIDERS",
    "ModelSpec",
    "ResponseLimits",
    "default_models",
    "parse_model",
    "split_model_name",
]

KNOWN_PROVIDERS = ("anthropic", "openai", "sim")

#: Bare model names users type, and the provider they belong to.
_BARE_PREFIXES = (
    ("claude-", "anthropic"),
    ("gpt-", "openai"),
    ("chatgpt-", "openai"),
    ("o1", "openai"),
    ("o3", "openai"),
    ("o4", "openai"),
    ("sim-", "sim"),
)

#: Characters that would split or end an HTTP header line.
_HEADER_BREAKERS = ("\r", "\n", "\x00")


def split_model_name(text: str) -> tuple[str, str]:
    """``provider:model`` (or a well-known bare name) -> ``(provider, model)``.

    ``claude-*`` is Anthropic; ``gpt-*``, ``chatgpt-*``, ``o1*``, ``o3*``, ``o4*``
    are OpenAI; ``sim`` and ``sim-*`` the simulator. Anything else needs its provider.
    """
    provider, sep, name = text.partition(":")
    if sep and provider.strip().lower() in KNOWN_PROVIDERS:
        return provider.strip().lower(), name.strip()
    bare = text.strip()
    if bare == "sim":
        return "sim", "sim-1"
    low = bare.lower()
    if low in KNOWN_PROVIDERS:
        raise ConfigurationError(
            f"model name missing in {bare!r}; write it as '{low}:MODEL', "
            "e.g. 'anthropic:claude-haiku-4-5'"
        )
    for prefix, owner in _BARE_PREFIXES:
        if low.startswith(prefix):
            return owner, bare
    if sep:
        raise ConfigurationError(
            f"unknown provider {provider.strip()!r} in model {text!r}; use one of "
            f"{', '.join(KNOWN_PROVIDERS)}, as in 'anthropic:claude-haiku-4-5', or "
            f"'openai:{bare}' for an OpenAI-compatible server (Ollama, vLLM, ...)"
        )
    raise ConfigurationError(
        f"model {text!r} has no provider; write it as 'provider:model', e.g. "
        f"'openai:{bare}' for an OpenAI-compatible server (vLLM, Ollama, ...) or "
        f"'anthropic:{bare}'; providers: {', '.join(KNOWN_PROVIDERS)}"
    )


@dataclass(frozen=True, slots=True)
class ResponseLimits:
    """What a server may make us hold for one response; past a limit the call fails
    with :class:`~agentic_synth.ResponseTooLargeError` instead of growing the process.

    The defaults are far above any real answer of the supported APIs.
    """

    #: Bytes of the status line and headers together.
    max_header_bytes: int = 64 * 1024
    #: Number of header fields.
    max_headers: int = 256
    #: Bytes of one (de-chunked) response body, streamed or not.
    max_body_bytes: int = 64 * 1024 * 1024
    #: Bytes of one line of a server-sent event stream.
    max_line_bytes: int = 1024 * 1024
    #: Bytes of the data of one server-sent event.
    max_event_bytes: int = 8 * 1024 * 1024
    #: Seconds a server may stay silent once its answer has started (headers in)
    #: before the connection is dropped; waiting for the answer to start is bounded
    #: by the call's timeout only (a non-streamed answer starts when it is complete).
    #: ``None``: only the call's timeout applies.
    read_idle_timeout: float | None = 120.0

    def __post_init__(self) -> None:
        for name in (
            "max_header_bytes",
            "max_headers",
            "max_body_bytes",
            "max_line_bytes",
            "max_event_bytes",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigurationError(
                    f"ResponseLimits.{name} must be a positive integer, got {value!r}"
                )
        idle = self.read_idle_timeout
        if idle is not None and (isinstance(idle, bool) or not (idle > 0 and math.isfinite(idle))):
            raise ConfigurationError(
                f"ResponseLimits.read_idle_timeout must be a positive number of seconds or "
                f"None, got {idle!r}"
            )


_ENV_KEYS = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}
_ENV_URLS = {"anthropic": "ANTHROPIC_BASE_URL", "openai": "OPENAI_BASE_URL"}


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One model deployment the engine may send requests to."""

    provider: str
    #: The model name; may be left out when ``provider`` is the whole
    #: ``provider:model`` string (``ModelSpec("anthropic:claude-haiku-4-5")``).
    model: str = ""
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    #: Relative share for the ``weighted`` strategy.
    weight: float = 1.0
    #: Client-side limits (``None``: unlimited).
    rpm: float | None = None
    input_tpm: float | None = None
    output_tpm: float | None = None
    max_in_flight: int | None = None
    #: Seconds for one provider call before it counts as a timeout.
    timeout: float | None = 600.0
    #: USD per input / output token, for cost accounting (``None``: the shipped price
    #: table's, see :mod:`agentic_synth._pricing`; a model in neither costs "unknown").
    input_price: float | None = None
    output_price: float | None = None
    #: USD per input token written to / read from the provider's prompt cache
    #: (``None``: the table's, else the provider's multipliers of ``input_price``:
    #: Anthropic 1.25x for 5-minute writes, 2x for 1-hour writes, 0.1x for reads).
    cache_write_price: float | None = None
    cache_write_1h_price: float | None = None
    cache_read_price: float | None = None
    #: USD per input / output token through the provider's batch API (``None``: the
    #: table's, else half of ``input_price`` / ``output_price``).
    batch_input_price: float | None = None
    batch_output_price: float | None = None
    #: Provider-specific options (the simulator's latency and faults, for one).
    options: Mapping[str, Any] = field(default_factory=dict)
    #: TLS verification: True (system CAs), False (none: testing only), a CA bundle
    #: file or directory, or an :class:`ssl.SSLContext` used as is.
    verify: bool | str | ssl.SSLContext = True
    #: Caps on what a server's response may make us hold (headers, body, SSE lines).
    response_limits: ResponseLimits = field(default_factory=ResponseLimits)

    def __post_init__(self) -> None:
        if not isinstance(self.provider, str) or not isinstance(self.model, str):
            raise ConfigurationError(
                "ModelSpec takes strings: ModelSpec('anthropic', 'claude-haiku-4-5') or "
                "ModelSpec('anthropic:claude-haiku-4-5')"
            )
        if not self.model:
            if self.provider.strip().lower() in ("anthropic", "openai"):
                raise ConfigurationError(
                    f"model name missing in {self.provider!r}; write it as '{self.provider}:MODEL'"
                )
            provider, model = split_model_name(self.provider)
            object.__setattr__(self, "provider", provider)
            object.__setattr__(self, "model", model)
        if self.api_key is not None:
            if not isinstance(self.api_key, str):
                raise ConfigurationError(f"api_key for {self.name} must be a string")
            object.__setattr__(self, "api_key", _clean_key(self.api_key, self.name))
        if self.base_url is not None:
            if not isinstance(self.base_url, str) or any(
                c in self.base_url for c in _HEADER_BREAKERS
            ):
                raise ConfigurationError(
                    f"base_url for {self.name} must be a URL string without line breaks, "
                    f"got {self.base_url!r}"
                )
            object.__setattr__(self, "base_url", self.base_url.strip())
        if not isinstance(self.response_limits, ResponseLimits):
            raise ConfigurationError("response_limits must be a ResponseLimits(...)")
        verify = self.verify
        if isinstance(verify, str):
            if not os.path.exists(verify):
                raise ConfigurationError(
                    f"verify for {self.name} names a CA bundle that does not exist: {verify!r}; "
                    "pass a PEM file or directory, True (system CAs) or an ssl.SSLContext"
                )
        elif not isinstance(verify, bool | ssl.SSLContext):
            raise ConfigurationError(
                f"verify for {self.name} must be True, False, a CA bundle path or an "
                f"ssl.SSLContext, got {type(verify).__name__}"
            )
        if self.provider not in KNOWN_PROVIDERS:
            raise ConfigurationError(
                f"unknown provider {self.provider!r}; use one of {', '.join(KNOWN_PROVIDERS)} "
                "as in 'anthropic:claude-haiku-4-5'"
            )
        if not self.model:
            raise ConfigurationError(
                f"model name missing in {self.provider!r}; write it as '{self.provider}:MODEL'"
            )
        for name in ("rpm", "input_tpm", "output_tpm", "timeout"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ConfigurationError(
                    f"{name} must be a positive number or None (unlimited), got {value!r}"
                )
        mif = self.max_in_flight
        if mif is not None and (isinstance(mif, bool) or not isinstance(mif, int) or mif <= 0):
            raise ConfigurationError(
                f"max_in_flight must be a positive integer or None, got {mif!r}"
            )
        if not (self.weight > 0 and math.isfinite(self.weight)):
            raise ConfigurationError(f"weight must be a positive number, got {self.weight!r}")
        prices = (
            self.input_price,
            self.output_price,
            self.cache_write_price,
            self.cache_write_1h_price,
            self.cache_read_price,
            self.batch_input_price,
            self.batch_output_price,
        )
        if any(p is not None and not (p >= 0 and math.isfinite(p)) for p in prices):
            raise ConfigurationError("prices per token must be finite numbers >= 0")

    @property
    def name(self) -> str:
        """The ``provider:model`` string."""
        return f"{self.provider}:{self.model}"

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context ``verify`` asks for (built anew on each call)."""
        verify = self.verify
        if isinstance(verify, ssl.SSLContext):
            return verify
        if verify is False:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        if isinstance(verify, str):
            if os.path.isdir(verify):
                return ssl.create_default_context(capath=verify)
            return ssl.create_default_context(cafile=verify)
        return ssl.create_default_context()

    def resolved(self) -> ModelSpec:
        """Fill base URL and key from the usual environment variables."""
        key = self.api_key
        url = self.base_url
        if key is None and self.provider in _ENV_KEYS:
            env = _ENV_KEYS[self.provider]
            key = _clean_key(os.environ.get(env) or "", env) or None
        if url is None and self.provider in _ENV_URLS:
            url = (os.environ.get(_ENV_URLS[self.provider]) or "").strip() or None
        if self.provider == "anthropic" and not key:
            raise ConfigurationError(
                f"no API key for {self.name}: set ANTHROPIC_API_KEY or pass "
                "ModelSpec(..., api_key=...); use 'sim:...' models to run without a key"
            )
        if self.provider == "openai" and not key and url is None:
            raise ConfigurationError(
                f"no API key for {self.name}: set OPENAI_API_KEY, or set OPENAI_BASE_URL / "
                "ModelSpec(base_url=...) for a local OpenAI-compatible server that needs none"
            )
        return replace(self, api_key=key, base_url=url)


def _clean_key(key: str, where: str) -> str:
    """The key without surrounding whitespace (a mounted secret's trailing newline);
    a key with a line break or NUL inside would split the HTTP header: refused."""
    key = key.strip()
    if any(c in key for c in _HEADER_BREAKERS):
        raise ConfigurationError(
            f"the API key for {where} contains a line break or NUL character inside it; "
            "check the file or variable it comes from (the key is not shown)"
        )
    return key


def parse_model(model: str | ModelSpec) -> ModelSpec:
    """Turn ``provider:model`` (or a well-known bare name) into a :class:`ModelSpec`."""
    if isinstance(model, ModelSpec):
        return model
    if not isinstance(model, str):
        raise ConfigurationError(
            f"a model is a 'provider:model' string or a ModelSpec, got {type(model).__name__}"
        )
    provider, name = split_model_name(model)
    return ModelSpec(provider=provider, model=name)


def default_models() -> list[str]:
    """Models used when none are given: ``SYNTH_MODELS``, else a keyed provider, else sim."""
    env = os.environ.get("SYNTH_MODELS")
    if env:
        return [m.strip() for m in env.split(",") if m.strip()]
    if os.environ.get("ANTHROPIC_API_KEY"):
        return ["anthropic:claude-haiku-4-5"]
    if os.environ.get("OPENAI_API_KEY"):
        return ["openai:gpt-4o-mini"]
    return ["sim:sim-1"]
