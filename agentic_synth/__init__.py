"""agentic-synth: synthetic data generation with LLMs at high throughput."""

from ._budget import Budget, BudgetAlert
from ._estimate import CostEstimate
from ._exceptions import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BudgetExceededError,
    ConfigurationError,
    InvalidRequestError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    PoolTimeoutError,
    ProviderError,
    QuotaExceededError,
    RateLimitedError,
    RedirectError,
    ResponseTooLargeError,
    ServerError,
    SynthError,
    UnreachableError,
)
from ._pricing import Prices, price_table, prices_for
from ._spec import ModelSpec, ResponseLimits
from ._sync import (
    generate,
    generate_batch,
    generate_events,
    generate_structured,
    generate_timeseries,
    iter_structured,
    run,
)
from ._synth import BatchStream, CompletionStream, Synth
from ._types import (
    Completion,
    Failure,
    Message,
    Request,
    Result,
    StreamCompleted,
    StreamEvent,
    TextDelta,
    Usage,
)
from .caching import Cache
from .monitor import MetricsSnapshot
from .routing import BreakerConfig, RetryPolicy

__version__ = "0.1.0"

__all__ = [
    "APIConnectionError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "BatchStream",
    "BreakerConfig",
    "Budget",
    "BudgetAlert",
    "BudgetExceededError",
    "Cache",
    "Completion",
    "CompletionStream",
    "ConfigurationError",
    "CostEstimate",
    "Failure",
    "InvalidRequestError",
    "Message",
    "MetricsSnapshot",
    "ModelSpec",
    "NotFoundError",
    "OverloadedError",
    "PermissionDeniedError",
    "PoolTimeoutError",
    "Prices",
    "ProviderError",
    "QuotaExceededError",
    "RateLimitedError",
    "RedirectError",
    "Request",
    "ResponseLimits",
    "ResponseTooLargeError",
    "Result",
    "RetryPolicy",
    "ServerError",
    "StreamCompleted",
    "StreamEvent",
    "Synth",
    "SynthError",
    "TextDelta",
    "UnreachableError",
    "Usage",
    "__version__",
    "generate",
    "generate_batch",
    "generate_events",
    "generate_structured",
    "generate_timeseries",
    "iter_structured",
    "price_table",
    "prices_for",
    "run",
]


def __getattr__(name: str) -> object:
    if name == "GenerationError":
        from . import _types

        return _types.__getattr__(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
