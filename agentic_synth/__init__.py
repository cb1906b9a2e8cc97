"""agentic-synth: synthetic data generation with LLMs at high throughput."""

from ._exceptions import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    InvalidRequestError,
    OverloadedError,
    ProviderError,
    RateLimitedError,
    ServerError,
    SynthError,
)
from ._spec import ModelSpec
from ._sync import generate, generate_batch, run
from ._synth import BatchStream, CompletionStream, Synth
from ._types import (
    Completion,
    GenerationError,
    Message,
    Request,
    Result,
    StreamCompleted,
    StreamEvent,
    TextDelta,
    Usage,
)
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
    "Completion",
    "CompletionStream",
    "ConfigurationError",
    "GenerationError",
    "InvalidRequestError",
    "Message",
    "MetricsSnapshot",
    "ModelSpec",
    "OverloadedError",
    "ProviderError",
    "RateLimitedError",
    "Request",
    "Result",
    "RetryPolicy",
    "ServerError",
    "StreamCompleted",
    "StreamEvent",
    "Synth",
    "SynthError",
    "TextDelta",
    "Usage",
    "__version__",
    "generate",
    "generate_batch",
    "run",
]
