"""One exception tree for everything agentic-synth raises.

Provider errors carry what a caller (or the router) needs to decide what to do
next: the HTTP status, the server's retry-after hint and the provider's request
id. Messages never include API keys: build them with :func:`redact`.
"""

from __future__ import annotations

import re

__all__ = [
    "APIConnectionError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "InvalidRequestError",
    "OverloadedError",
    "ProviderError",
    "RateLimitedError",
    "ServerError",
    "SynthError",
    "redact",
]

# Anything that looks like a bearer secret: sk-..., sk-ant-..., long opaque tokens after "key".
_SECRET_RE = re.compile(r"(sk-[A-Za-z0-9_\-]{6,}|(?i:api[_-]?key)[\"'=:\s]+[A-Za-z0-9_\-]{8,})")


def redact(text: str, *secrets: str | None) -> str:
    """Return ``text`` with the given secrets and anything key-shaped masked."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _SECRET_RE.sub("***", text)


class SynthError(Exception):
    """Base class of every error agentic-synth raises on purpose."""


class ConfigurationError(SynthError, ValueError):
    """The configuration cannot work (unknown provider, missing key, bad limits)."""


class InvalidRequestError(SynthError, ValueError):
    """A single request is malformed (empty messages, max_tokens <= 0, ...)."""


class ProviderError(SynthError):
    """A model provider failed to answer a request.

    ``retryable`` says whether trying again (here or on another model) can help;
    ``provider_fault`` whether the failure counts against the provider's health.
    """

    retryable: bool = False
    provider_fault: bool = False
    #: Attempts made for the request when this error ended it (set by the router).
    attempts: int = 0

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        request_id: str | None = None,
        model: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.request_id = request_id
        self.model = model

    def __str__(self) -> str:
        parts = [self.message]
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.model:
            parts.append(f"model={self.model}")
        if self.retry_after is not None:
            parts.append(f"retry_after={self.retry_after:g}s")
        if self.request_id:
            parts.append(f"request_id={self.request_id}")
        return " ".join(parts) if len(parts) == 1 else f"{parts[0]} ({', '.join(parts[1:])})"

    def __reduce__(self):  # type: ignore[no-untyped-def]
        kwargs = {
            "status": self.status,
            "retry_after": self.retry_after,
            "request_id": self.request_id,
            "model": self.model,
        }
        return (_rebuild, (type(self), self.message, kwargs))


def _rebuild(cls: type[ProviderError], message: str, kwargs: dict[str, object]) -> ProviderError:
    return cls(message, **kwargs)  # type: ignore[arg-type]


class RateLimitedError(ProviderError):
    """HTTP 429: the provider throttled us; honour ``retry_after``."""

    retryable = True


class OverloadedError(ProviderError):
    """HTTP 529 / ``overloaded_error``: the provider is saturated."""

    retryable = True
    provider_fault = True


class ServerError(ProviderError):
    """HTTP 5xx (and 408/409): the provider failed on its side."""

    retryable = True
    provider_fault = True


class APITimeoutError(ProviderError):
    """No (complete) answer within the request timeout."""

    retryable = True
    provider_fault = True


class APIConnectionError(ProviderError):
    """The connection failed, was reset, or the response was malformed."""

    retryable = True
    provider_fault = True


class BadRequestError(ProviderError):
    """HTTP 400/404/413/422: the request itself is wrong; retrying cannot help."""


class AuthenticationError(ProviderError):
    """HTTP 401/403: the key is missing, wrong or not allowed to use the model."""
