"""Status / error type / header mapping shared by the HTTP providers."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from multidict import CIMultiDict

from agentic_synth._exceptions import (
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
)
from agentic_synth.providers._http_errors import (
    BodyError,
    error_for_status,
    error_for_type,
    error_from_body,
    parse_retry_after,
    rate_limit_headers,
)


@pytest.mark.parametrize(
    ("status", "cls", "retryable"),
    [
        (429, RateLimitedError, True),
        (529, OverloadedError, True),
        (500, ServerError, True),
        (502, ServerError, True),
        (503, ServerError, True),
        (408, ServerError, True),
        (409, ServerError, True),
        (400, BadRequestError, False),
        (404, NotFoundError, False),
        (413, BadRequestError, False),
        (422, BadRequestError, False),
        (401, AuthenticationError, False),
        (403, PermissionDeniedError, False),
        (402, QuotaExceededError, False),
        (301, RedirectError, False),
        (307, RedirectError, False),
    ],
)
def test_status_classes(status: int, cls: type[ProviderError], retryable: bool) -> None:
    exc = error_for_status(status, "boom", model="m")
    assert type(exc) is cls
    assert exc.status == status and exc.model == "m" and exc.retryable is retryable


def test_overloaded_name_wins_over_status() -> None:
    assert type(error_for_status(500, "x", error_type="overloaded_error")) is OverloadedError
    # OpenAI-style: a 503 whose code says overloaded.
    exc = error_for_status(503, "x", error_type="server_error", error_code="overloaded")
    assert type(exc) is OverloadedError and exc.status == 503
    assert type(error_for_status(503, "x", error_type="server_error")) is ServerError


def test_code_is_more_specific_than_type_in_streams() -> None:
    exc = error_for_type("server_error", "x", error_code="overloaded")
    assert type(exc) is OverloadedError
    exc = error_for_type("requests", "x", error_code="rate_limit_exceeded")
    assert type(exc) is RateLimitedError
    assert type(error_for_type("server_error", "x", error_code="unheard_of")) is ServerError
    quota = error_for_type("insufficient_quota", "x", error_code="insufficient_quota")
    assert type(quota) is QuotaExceededError and quota.retryable is False
    assert quota.code == "insufficient_quota"


@pytest.mark.parametrize(
    ("error_type", "cls"),
    [
        ("overloaded_error", OverloadedError),
        ("api_error", ServerError),
        ("rate_limit_error", RateLimitedError),
        ("server_error", ServerError),
        ("invalid_request_error", BadRequestError),
        ("authentication_error", AuthenticationError),
        ("timeout_error", APITimeoutError),
        ("something_new", ServerError),
        (None, ServerError),
    ],
)
def test_stream_error_types(error_type: str | None, cls: type[ProviderError]) -> None:
    exc = error_for_type(error_type, "mid-stream")
    assert type(exc) is cls and exc.status is None


def test_headers_give_retry_after_request_id_and_should_retry() -> None:
    headers = CIMultiDict({"Retry-After": "7", "X-Request-Id": "req_1", "X-Should-Retry": "false"})
    exc = error_for_status(503, "down", headers=headers)
    assert exc.retry_after == 7.0 and exc.request_id == "req_1"
    # Reported for the router's failure policy; it no longer overrides the class default.
    assert exc.should_retry is False and exc.retryable is True
    exc = error_for_status(400, "odd", headers={"x-should-retry": "true"})
    assert exc.should_retry is True and exc.retryable is False
    assert error_for_status(400, "odd", headers={}).should_retry is None


def test_insufficient_quota_is_not_worth_retrying() -> None:
    exc = error_for_status(429, "quota", error_type="insufficient_quota")
    assert type(exc) is QuotaExceededError and exc.retryable is False
    credit = "Your credit balance is too low to access the Anthropic API."
    assert type(error_for_status(400, credit, error_type="invalid_request_error")) is (
        QuotaExceededError
    )


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({"retry-after": "2.5"}) == 2.5
    assert parse_retry_after({"retry-after-ms": "nan", "retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after": "-1"}) is None
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    seconds = parse_retry_after({"retry-after": when})
    assert seconds is not None and 100 < seconds <= 120
    past = format_datetime(datetime.now(UTC) - timedelta(seconds=60), usegmt=True)
    assert parse_retry_after({"retry-after": past}) == 0.0


def test_rate_limit_headers_filtered_and_lowercased() -> None:
    items = [
        ("Anthropic-RateLimit-Requests-Remaining", "10"),
        ("x-ratelimit-limit-tokens", "1000"),
        ("Retry-After", "1"),
        ("retry-after-ms", "900"),
        ("Content-Type", "application/json"),
        ("request-id", "r"),
    ]
    assert rate_limit_headers(items) == {
        "anthropic-ratelimit-requests-remaining": "10",
        "x-ratelimit-limit-tokens": "1000",
        "retry-after": "1",
        "retry-after-ms": "900",
    }


def test_error_body_shapes() -> None:
    assert error_from_body({"error": {"type": "rate_limit_error", "message": "slow"}}) == (
        "rate_limit_error",
        None,
        "slow",
    )
    body = {"error": {"type": "requests", "code": "rate_limit_exceeded", "message": "m"}}
    assert error_from_body(body) == BodyError("requests", "rate_limit_exceeded", "m")
    assert error_from_body({"error": "model not found"}) == (None, None, "model not found")
    vllm = {"object": "error", "type": "BadRequestError", "message": "v", "code": 400}
    assert error_from_body(vllm) == ("BadRequestError", None, "v")
    assert error_from_body([1]) == (None, None, None)
    assert error_from_body({"error": 3}) == (None, None, None)


def test_messages_redact_key_and_are_bounded() -> None:
    key = "sk-ant-api03-SECRETSECRETSECRET"
    exc = error_for_status(401, f"invalid x-api-key {key} " + "y" * 2000, api_key=key)
    assert key not in str(exc) and key not in repr(exc)
    assert len(exc.message) < 600


def test_mapped_errors_pickle_with_fields() -> None:
    exc = error_for_status(429, "slow", headers={"retry-after": "4", "request-id": "q"}, model="m")
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is RateLimitedError
    assert (back.status, back.retry_after, back.request_id, back.model) == (429, 4.0, "q", "m")
