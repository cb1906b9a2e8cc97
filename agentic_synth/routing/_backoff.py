"""Retry timing: exponential backoff with full jitter, and the server's retry hints.

Header parsing is the providers' (:mod:`agentic_synth.providers._http_errors`),
re-exported here so the router has one place to import retry timing from.

tenacity's ``wait_random_exponential`` computes the same full-jitter delay, but
it draws from the global :mod:`random` (no injectable source, so tests cannot
pin a delay) and wants a ``RetryCallState`` per call; the router runs its own
attempt loop across models, so the three-line formula is used directly.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .._exceptions import ConfigurationError, ProviderError
from ..providers._http_errors import _should_retry, parse_retry_after

__all__ = ["RetryPolicy", "backoff_delay", "parse_retry_after", "should_retry_header"]

#: Extra random wait on top of a server's retry-after, as a fraction of it, so that
#: many requests told "retry in 2 s" at once do not come back in one burst.
_RETRY_AFTER_SPREAD = 0.1
#: 2**62 * base exceeds any cap; a larger exponent would overflow a float.
_MAX_EXPONENT = 62


def backoff_delay(
    attempt: int,
    *,
    base: float = 0.5,
    cap: float = 30.0,
    rng: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): full jitter.

    Uniform in ``[0, min(cap, base * 2**(attempt - 1)))``, which spreads retries of
    many clients better than equal or decorrelated jitter.
    """
    if attempt < 1:
        raise ValueError(f"attempt is 1-based, got {attempt}")
    return rng() * min(cap, base * 2.0 ** min(attempt - 1, _MAX_EXPONENT))


def should_retry_header(headers: Mapping[str, str]) -> bool | None:
    """The server's ``x-should-retry`` verdict: ``True``, ``False``, or ``None`` if absent."""
    return _should_retry(headers)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When to retry a failed call on the same model, and after how long.

    ``max_attempts`` counts the first try. ``deadline`` bounds the seconds from a
    request's first attempt to the start of its last retry. A wait longer than
    ``fallback_after`` seconds (a server's long Retry-After) sends the request to
    another deployment that is free now, if there is one, instead of sleeping.
    Whether an error is worth retrying at all is the failure policy's call
    (:mod:`._policy`); this class only times the retries.
    """

    max_attempts: int = 4
    base: float = 0.5
    cap: float = 30.0
    deadline: float | None = None
    fallback_after: float = 10.0
    rng: Callable[[], float] = field(default=random.random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (isinstance(self.max_attempts, int) and self.max_attempts >= 1):
            raise ConfigurationError(
                f"max_attempts must be an integer >= 1 (1 = never retry), got {self.max_attempts!r}"
            )
        if not (self.base > 0 and math.isfinite(self.base)):
            raise ConfigurationError(f"base must be a positive number of seconds, got {self.base}")
        if not (self.cap >= self.base and math.isfinite(self.cap)):
            raise ConfigurationError(f"cap must be a finite number >= base, got {self.cap}")
        if self.deadline is not None and not (self.deadline > 0):
            raise ConfigurationError(
                f"deadline must be a positive number of seconds or None, got {self.deadline}"
            )
        if not (self.fallback_after >= 0 and math.isfinite(self.fallback_after)):
            raise ConfigurationError(
                f"fallback_after must be a number of seconds >= 0, got {self.fallback_after}"
            )

    def next_delay(
        self, attempt: int, error: BaseException, *, elapsed: float = 0.0
    ) -> float | None:
        """Seconds to wait before retrying after failed attempt ``attempt`` (1-based).

        ``None`` means do not retry here: the error is not a retryable
        :class:`ProviderError`, the attempts are used up, or waiting would pass
        the deadline (``elapsed`` = seconds since the first attempt began).
        A server's ``retry_after`` is honoured: the wait is at least that long.
        """
        if not isinstance(error, ProviderError) or not error.retryable:
            return None
        if error.should_retry is False:
            return None
        return self.delay(attempt, error.retry_after, elapsed=elapsed)

    def delay(
        self, attempt: int, retry_after: float | None = None, *, elapsed: float = 0.0
    ) -> float | None:
        """Seconds before attempt ``attempt + 1``, whatever the error; ``None`` when the
        attempts are used up or the wait would pass :attr:`deadline`."""
        if attempt >= self.max_attempts:
            return None
        delay = backoff_delay(attempt, base=self.base, cap=self.cap, rng=self.rng)
        if retry_after is not None and retry_after >= delay:
            if not math.isfinite(retry_after):
                return None
            delay = retry_after * (1.0 + _RETRY_AFTER_SPREAD * self.rng())
        if self.deadline is not None and elapsed + delay > self.deadline:
            return None
        return delay
