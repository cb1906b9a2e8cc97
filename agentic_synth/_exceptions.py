"""One exception tree for everything agentic-synth raises.

Provider errors carry what a caller (or the router) needs to decide what to do
next: the HTTP status, the server's retry-after hint and the provider's request
id. Messages never include API keys: build them with :func:`redact`.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

__all__ = [
    "APIConnectionError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceededError",
    "ConfigurationError",
    "InvalidRequestError",
    "NotFoundError",
    "OverloadedError",
    "PermissionDeniedError",
    "PoolTimeoutError",
    "ProviderError",
    "QuotaExceededError",
    "RateLimitedError",
    "RedirectError",
    "ResponseTooLargeError",
    "ServerError",
    "SynthError",
    "UnreachableError",
    "redact",
    "redact_url",
]

# Anything that looks like a bearer secret: sk-..., sk-ant-..., long opaque tokens after
# "key", and a key a server masked but for its ends ("sk-pr****wxyz").
_SECRET_RE = re.compile(
    r"(\bsk-[A-Za-z0-9_\-]{6,}|(?i:api[_-]?key)[\"'=:\s]+[A-Za-z0-9_\-]{8,}"
    r"|\b[A-Za-z0-9_\-]{0,12}\*{4,64}[A-Za-z0-9_\-]{1,8})"
)


#: A run of at least this many characters of a secret is masked wherever it appears
#: (a server echoing "sk-proj-****wxyz" or the first part of a key gives part of it away).
_PART = 6
#: Characters of a text that are kept and redacted; the rest is cut. Messages are
#: for people and logs, and a server's 64 MB error body must not cost seconds.
_REDACT_MAX = 4096


def _variants(secret: str) -> set[str]:
    """The forms a secret takes once escaped by JSON, repr() or URL encoding."""
    stripped = secret.strip()
    forms = {secret, stripped}
    for form in list(forms):
        forms.add(json.dumps(form)[1:-1])
        forms.add(repr(form)[1:-1])
        forms.add(urllib.parse.quote(form, safe=""))
    return {f for f in forms if f}


def redact_url(url: str) -> str:
    """``url`` with its password masked (``redis://user:***@host:6379/0``), to show."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def redact(text: str, *secrets: str | None) -> str:
    """Return ``text`` with the given secrets (whole, in part or escaped) and anything
    key-shaped masked.

    Every run of characters covered by ``_PART``-character pieces of a secret is
    replaced by ``***``: this catches the key itself, its escaped forms, and the
    prefixes or suffixes servers quote back in their error messages.
    """
    if len(text) > _REDACT_MAX:
        text = text[:_REDACT_MAX] + "...[cut]"
    grams: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        for form in _variants(secret):
            if len(form) < _PART:
                # too short to mask in part: only where it stands as a word of its own
                if form.strip():
                    text = re.sub(rf"(?<![\w-]){re.escape(form)}(?![\w-])", "***", text)
                continue
            grams.update(form[i : i + _PART] for i in range(len(form) - _PART + 1))
    if grams and len(text) >= _PART:
        covered = bytearray(len(text))
        for i in range(len(text) - _PART + 1):
            if text[i : i + _PART] in grams:
                covered[i : i + _PART] = b"\x01" * _PART
        if any(covered):
            out: list[str] = []
            i = 0
            while i < len(text):
                if covered[i]:
                    while i < len(text) and covered[i]:
                        i += 1
                    out.append("***")
                else:
                    out.append(text[i])
                    i += 1
            text = "".join(out)
    return _SECRET_RE.sub("***", text)


class SynthError(Exception):
    """Base class of every error agentic-synth raises on purpose."""


class ConfigurationError(SynthError, ValueError):
    """The configuration cannot work (unknown provider, missing key, bad limits)."""


class InvalidRequestError(SynthError, ValueError):
    """A single request is malformed (empty messages, max_tokens <= 0, ...)."""


class BudgetExceededError(SynthError):
    """A request was not sent: its worst-case cost does not fit in what is left of
    the budget. Once one does not fit, the job sends nothing more (every remaining
    input ends with this error, none of them paid for)."""

    def __init__(
        self, message: str, *, limit_usd: float, spent_usd: float, needed_usd: float = 0.0
    ) -> None:
        super().__init__(message)
        self.limit_usd = limit_usd
        self.spent_usd = spent_usd
        self.needed_usd = needed_usd


class ProviderError(SynthError):
    """A model provider failed to answer a request.

    ``retryable`` says whether trying again (here or on another model) can help;
    ``provider_fault`` whether the failure counts against the provider's health.
    """

    retryable: bool = False
    provider_fault: bool = False
    #: Attempts made for the request when this error ended it (set by the router).
    attempts: int = 0
    #: The provider's error ``code`` or ``type`` (``insufficient_quota``, ``not_found_error``).
    code: str | None = None
    #: The server's ``x-should-retry`` verdict when it sent one (``False``: do not retry here).
    should_retry: bool | None = None
    #: Rate-limit headers of the error response (names lower-cased), for the limiter.
    headers: Mapping[str, str] | None = None

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
        # the instance dict carries the rest (code, should_retry, host, location, ...)
        return (_rebuild, (type(self), self.message, kwargs), dict(self.__dict__))


def _rebuild(cls: type[ProviderError], message: str, kwargs: dict[str, object]) -> ProviderError:
    exc = ProviderError.__new__(cls)
    ProviderError.__init__(exc, message, **kwargs)  # type: ignore[arg-type]
    return exc


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


class QuotaExceededError(ProviderError):
    """The account's quota or credit is used up (OpenAI ``insufficient_quota``, Anthropic
    "credit balance is too low", HTTP 402): waiting will not help; another deployment may."""


class UnreachableError(APIConnectionError):
    """No connection could be made to the host (name not resolved, refused, unreachable).

    ``host`` names the host, so a typo in a base URL is visible at a glance.
    """

    def __init__(self, message: str, *, host: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.host = host


class ResponseTooLargeError(APIConnectionError):
    """The server sent more than the configured limits allow (headers, body, SSE line)."""


class PoolTimeoutError(APITimeoutError):
    """No pooled connection became free in time: our own backlog, not the provider's fault."""

    provider_fault = False


class RedirectError(ProviderError):
    """HTTP 3xx: the base URL points somewhere else (``location`` says where); we never
    follow redirects with a key attached."""

    def __init__(self, message: str, *, location: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.location = location


class BadRequestError(ProviderError):
    """HTTP 400/413/422: the request itself is wrong; retrying cannot help."""


class NotFoundError(BadRequestError):
    """HTTP 404: the model (or the endpoint under the base URL) does not exist there."""


class AuthenticationError(ProviderError):
    """HTTP 401: the key is missing or wrong."""


class PermissionDeniedError(AuthenticationError):
    """HTTP 403: the key may not do this (this model, this region, or this content)."""
