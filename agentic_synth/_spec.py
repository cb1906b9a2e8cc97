"""Model specifications: which provider and model, where, with what key and limits.

A model is named ``provider:model`` (``anthropic:claude-haiku-4-5``,
``openai:llama-3.1-8b``, ``sim:sim-1``). A :class:`ModelSpec` adds the
deployment (base URL, key) and the per-model limits the router uses, so two
deployments of one provider are two entries.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ._exceptions import ConfigurationError

__all__ = ["KNOWN_PROVIDERS", "ModelSpec", "default_models", "parse_model"]

KNOWN_PROVIDERS = ("anthropic", "openai", "sim")

_ENV_KEYS = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}
_ENV_URLS = {"anthropic": "ANTHROPIC_BASE_URL", "openai": "OPENAI_BASE_URL"}


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One model deployment the engine may send requests to."""

    provider: str
    model: str
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
    #: USD per input / output token, for cost accounting.
    input_price: float = 0.0
    output_price: float = 0.0
    #: Provider-specific options (the simulator's latency and faults, for one).
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
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
        if self.max_in_flight is not None and self.max_in_flight <= 0:
            raise ConfigurationError(
                f"max_in_flight must be a positive integer or None, got {self.max_in_flight!r}"
            )
        if not (self.weight > 0 and math.isfinite(self.weight)):
            raise ConfigurationError(f"weight must be a positive number, got {self.weight!r}")
        if self.input_price < 0 or self.output_price < 0:
            raise ConfigurationError("prices per token must be >= 0")

    @property
    def name(self) -> str:
        """The ``provider:model`` string."""
        return f"{self.provider}:{self.model}"

    def resolved(self) -> ModelSpec:
        """Fill base URL and key from the usual environment variables."""
        key = self.api_key
        url = self.base_url
        if key is None and self.provider in _ENV_KEYS:
            key = os.environ.get(_ENV_KEYS[self.provider]) or None
        if url is None and self.provider in _ENV_URLS:
            url = os.environ.get(_ENV_URLS[self.provider]) or None
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


def parse_model(model: str | ModelSpec) -> ModelSpec:
    """Turn ``provider:model`` into a :class:`ModelSpec` (specs pass through)."""
    if isinstance(model, ModelSpec):
        return model
    if not isinstance(model, str):
        raise ConfigurationError(
            f"a model is a 'provider:model' string or a ModelSpec, got {type(model).__name__}"
        )
    provider, sep, name = model.partition(":")
    if not sep:
        raise ConfigurationError(
            f"model {model!r} has no provider; write it as 'provider:model', "
            f"with provider one of {', '.join(KNOWN_PROVIDERS)}"
        )
    return ModelSpec(provider=provider.strip().lower(), model=name.strip())


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
