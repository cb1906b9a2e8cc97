"""HTTP status, error type and header -> :mod:`agentic_synth._exceptions` mapping.

Shared by the Anthropic and OpenAI-compatible providers so a 429 or a 529
means the same thing to the router whichever backend sent it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any, NamedTuple

import yarl

from .._exceptions import (
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProviderError,
    QuotaExceededError,
    RateLimitedError,
    RedirectError,
    ServerError,
    redact,
)

__all__ = [
    "BodyError",
    "error_for_status",
    "error_for_type",
    "error_from_body",
    "parse_retry_after",
    "rate_limit_headers",
    "redirect_message",
]

# Longest message kept from a provider's error body: enough to read, bounded for logs.
_MAX_MESSAGE = 500

_RATE_LIMIT_PREFIXES = ("anthropic-ratelimit-", "x-ratelimit-")
_RATE_LIMIT_NAMES = frozenset({"retry-after", "retry-after-ms"})

#: Error ``type`` strings (Anthropic names, OpenAI names, common server variants).
_TYPE_CLASSES: dict[str, type[ProviderError]] = {
    "rate_limit_error": RateLimitedError,
    "rate_limit_exceeded": RateLimitedError,
    "requests": RateLimitedError,
    "tokens": RateLimitedError,
    # Billing quota or credit used up: waiting will not help, another deployment may.
    "insufficient_quota": QuotaExceededError,
    "billing_hard_limit_reached": QuotaExceededError,
    "billing_not_active": QuotaExceededError,
    "billing_error": QuotaExceededError,
    "overloaded_error": OverloadedError,
    "overloaded": OverloadedError,
    "api_error": ServerError,
    "server_error": ServerError,
    "internal_error": ServerError,
    "service_unavailable": ServerError,
    "timeout_error": APITimeoutError,
    "invalid_request_error": BadRequestError,
    "not_found_error": NotFoundError,
    "model_not_found": NotFoundError,
    "request_too_large": BadRequestError,
    "context_length_exceeded": BadRequestError,
    "badrequesterror": BadRequestError,
    "authentication_error": AuthenticationError,
    "permission_error": PermissionDeniedError,
    "invalid_api_key": AuthenticationError,
}


def rate_limit_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The rate-limit related headers among ``headers`` items, names lower-cased."""
    found: dict[str, str] = {}
    for name, value in headers:
        low = name.lower()
        if low.startswith(_RATE_LIMIT_PREFIXES) or low in _RATE_LIMIT_NAMES:
            found[low] = value
    return found


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or HTTP date).

    ``headers`` must be looked up case-insensitively or have lower-cased names.
    """
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            ms = float(value)
        except ValueError:
            ms = math.nan
        if math.isfinite(ms) and ms >= 0:
            return ms / 1000.0
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        return max(0.0, when.timestamp() - time.time())
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _named_class(names: tuple[str | None, ...]) -> type[ProviderError] | None:
    for name in names:
        if name:
            cls = _TYPE_CLASSES.get(name.lower())
            if cls is not None:
                return cls
    return None


#: Phrases of error messages that mean "the account is out of credit or quota", for
#: servers that send them with a generic type (Anthropic answers 400
#: ``invalid_request_error`` "Your credit balance is too low ..."). Not a bare
#: "billing": the message starts with the host's name, and a 400 about a
#: ``billing_address`` field is a bad request, not an empty account.
_QUOTA_PHRASES = (
    "credit balance is too low",
    "exceeded your current quota",
    "insufficient_quota",
    "insufficient quota",
)


def _class_for_status(
    status: int, names: tuple[str | None, ...], message: str
) -> type[ProviderError]:
    named = _named_class(names)
    if named is QuotaExceededError or status == 402:
        return QuotaExceededError
    if status in (400, 403, 429) and any(p in message.lower() for p in _QUOTA_PHRASES):
        return QuotaExceededError
    if named is OverloadedError or status == 529:
        return OverloadedError
    if status == 429:
        return RateLimitedError
    if status == 401:
        return AuthenticationError
    if status == 403:
        return PermissionDeniedError
    if status == 404:
        return NotFoundError
    if 300 <= status < 400:
        return RedirectError
    if status in (408, 409) or status >= 500:
        return ServerError
    if 400 <= status < 500:
        # A 400 whose code says "model_not_found" is the more precise NotFoundError.
        if named is not None and issubclass(named, BadRequestError):
            return named
        return BadRequestError
    # A non-error status carrying an error (e.g. in a 200 stream) is the provider's fault.
    return named or ServerError


def _should_retry(headers: Mapping[str, str]) -> bool | None:
    value = headers.get("x-should-retry")
    if value is None:
        return None
    value = value.strip().lower()
    return True if value == "true" else False if value == "false" else None


def error_for_status(
    status: int,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    error_type: str | None = None,
    error_code: str | None = None,
    model: str | None = None,
    api_key: str | None = None,
    secrets: Iterable[str | None] = (),
) -> ProviderError:
    """The exception for an HTTP ``status`` (an error or a redirect); the body's error
    code/type refine it.

    ``headers`` supply ``retry-after``, ``request-id``, the rate-limit headers and
    ``x-should-retry`` (kept as ``should_retry``; the router's policy weighs it,
    ``retryable`` stays the class's). ``api_key`` and ``secrets`` are masked.
    """
    names = (error_code, error_type)
    keys = (api_key, *secrets)
    cls = _class_for_status(status, names, message)
    exc = _build(cls, message, status=status, headers=headers, model=model, secrets=keys)
    exc.code = error_code or error_type
    if isinstance(exc, RedirectError) and headers is not None:
        location = headers.get("location")
        exc.location = None if location is None else redact(location[:300], *keys)
    return exc


def redirect_message(status: int, base_url: str, location: str | None, path: str) -> str:
    """What to do about a 3xx: redirects are never followed (the key would go along).

    ``path`` is what the provider appends to the base URL, so the base URL to
    set can be read off the ``Location``; ``http://`` to ``https://`` is named.
    """
    if not location:
        return (
            f"HTTP {status} from {base_url} without a Location: base_url does not point at "
            "the API; redirects are not followed"
        )
    base = yarl.URL(base_url)
    target = (
        base.join(yarl.URL(location))
        if not location.startswith(("http:", "https:"))
        else (yarl.URL(location))
    )
    shown = str(target)[:300]
    suggestion = shown
    tail = target.path.rstrip("/")
    if tail.endswith(path):
        suggestion = str(target.with_path(tail[: -len(path)] or "/").with_query(None))
    text = f"HTTP {status} from {base_url}: redirected to {shown}"
    if base.scheme == "http" and target.scheme == "https" and target.host == base.host:
        text += "; the server wants https://, not http://"
    return (
        f"{text}; set base_url to the final URL ({suggestion}): redirects are not followed, "
        "so the key never goes to another URL"
    )


def error_for_type(
    error_type: str | None,
    message: str,
    *,
    error_code: str | None = None,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
    model: str | None = None,
    api_key: str | None = None,
    secrets: Iterable[str | None] = (),
) -> ProviderError:
    """The exception for an error named only by its code/type, as in an SSE ``error`` event.

    The (more specific) code wins over the type; an unknown name is a
    :class:`ServerError`: the provider failed mid-answer.
    """
    names = (error_code, error_type)
    cls = _named_class(names) or ServerError
    if any(p in message.lower() for p in _QUOTA_PHRASES):
        cls = QuotaExceededError
    keys = (api_key, *secrets)
    exc = _build(cls, message, status=status, headers=headers, model=model, secrets=keys)
    exc.code = error_code or error_type
    return exc


def _build(
    cls: type[ProviderError],
    message: str,
    *,
    status: int | None,
    headers: Mapping[str, str] | None,
    model: str | None,
    secrets: tuple[str | None, ...],
) -> ProviderError:
    text = redact(message, *secrets)
    if len(text) > _MAX_MESSAGE:
        text = text[:_MAX_MESSAGE] + "..."
    retry_after = request_id = None
    should_retry = None
    if headers is not None:
        retry_after = parse_retry_after(headers)
        request_id = headers.get("request-id") or headers.get("x-request-id")
        should_retry = _should_retry(headers)
    exc = cls(text, status=status, retry_after=retry_after, request_id=request_id, model=model)
    exc.should_retry = should_retry
    if headers is not None:
        exc.headers = rate_limit_headers(headers.items()) or None
    return exc


class BodyError(NamedTuple):
    """What an error body says: its ``type``, its string ``code`` and its ``message``."""

    type: str | None
    code: str | None
    message: str | None


def error_from_body(body: Any) -> BodyError:
    """The error in a body, in the shapes servers use.

    ``{"error": {"type", "code", "message"}}`` (OpenAI, Anthropic),
    ``{"error": "text"}`` (Ollama, llama.cpp) and ``{"object": "error", "type", "message"}``
    (vLLM). Non-string codes (vLLM sends the status) are left out.
    """
    if not isinstance(body, dict):
        return BodyError(None, None, None)
    error = body.get("error", body)
    if isinstance(error, str):
        return BodyError(None, None, error)
    if not isinstance(error, dict):
        return BodyError(None, None, None)
    error_type, code, message = error.get("type"), error.get("code"), error.get("message")
    return BodyError(
        error_type if isinstance(error_type, str) else None,
        code if isinstance(code, str) else None,
        message if isinstance(message, str) else None,
    )
