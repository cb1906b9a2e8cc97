"""Model backends behind one protocol: ``anthropic``, ``openai`` (compatible servers), ``sim``.

Provider modules are imported lazily, so a job on the simulator never pays for
importing the Anthropic SDK.
"""

from __future__ import annotations

import importlib
from typing import Any

from .._exceptions import ConfigurationError
from .._spec import KNOWN_PROVIDERS, ModelSpec
from ._base import Provider, ProviderStreamEvent

__all__ = ["Provider", "ProviderStreamEvent", "create_provider", "validate_spec"]


def _module(spec: ModelSpec) -> Any:
    if spec.provider not in KNOWN_PROVIDERS:
        raise ConfigurationError(
            f"unknown provider {spec.provider!r}; use one of {', '.join(KNOWN_PROVIDERS)}"
        )
    return importlib.import_module(f".{spec.provider}", __name__)


def validate_spec(spec: ModelSpec) -> None:
    """Check provider-specific options now, so a bad one fails at construction."""
    check = getattr(_module(spec), "validate", None)
    if check is not None:
        check(spec)


def create_provider(spec: ModelSpec, *, max_connections: int) -> Provider:
    """Create the provider for one (resolved) model deployment."""
    module = _module(spec)
    provider: Provider = module.create(spec, max_connections=max_connections)
    return provider
