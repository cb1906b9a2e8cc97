"""Model routing: strategies, fallback, circuit breakers, retries, client-side rate limits."""

from ._backoff import RetryPolicy
from ._breaker import BreakerState, CircuitBreaker
from ._router import BreakerConfig, NoModelAvailableError, Routed, Router
from ._strategy import STRATEGIES

__all__ = [
    "STRATEGIES",
    "BreakerConfig",
    "BreakerState",
    "CircuitBreaker",
    "NoModelAvailableError",
    "RetryPolicy",
    "Routed",
    "Router",
]
