"""The failure policy table, row by row, and how each error class is classified."""

from __future__ import annotations

import pytest

from agentic_synth import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
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
    UnreachableError,
)
from agentic_synth.routing._policy import (
    POLICY,
    ErrorKind,
    Outcome,
    Situation,
    classify,
    decide,
)

K, Do = ErrorKind, Outcome

# The policy restated independently: kind -> outcome per situation, in the column
# order RETRY_SOON, RETRY_LATER, NO_RETRY_HERE, REPEATED, EVERY_DEPLOYMENT.
EXPECTED: dict[ErrorKind, tuple[Outcome, ...]] = {
    # transient faults: retry while it is cheap, else another deployment
    K.TRANSIENT: (Do.RETRY, Do.FALLBACK, Do.FALLBACK, Do.FALLBACK, Do.FALLBACK),
    # 429: same, and a long Retry-After goes to an idle fallback instead of sleeping
    K.THROTTLED: (Do.RETRY, Do.FALLBACK, Do.FALLBACK, Do.FALLBACK, Do.FALLBACK),
    # our own pool backlog: waiting here is as good as anywhere
    K.CLIENT_SIDE: (Do.RETRY, Do.RETRY, Do.FALLBACK, Do.FALLBACK, Do.FALLBACK),
    # a host that cannot be reached: retry, then out; stop when nothing ever could
    K.UNREACHABLE: (Do.RETRY, Do.FALLBACK, Do.FALLBACK, Do.COOLDOWN, Do.STOP_JOB),
    # x-should-retry: false: never retried here, another deployment may do
    K.DO_NOT_RETRY: (Do.FALLBACK,) * 5,
    # quota, unknown model, redirect: the deployment cannot serve; out for long
    K.QUOTA: (Do.COOLDOWN,) * 4 + (Do.STOP_JOB,),
    K.NOT_FOUND: (Do.COOLDOWN,) * 4 + (Do.STOP_JOB,),
    K.REDIRECT: (Do.COOLDOWN,) * 4 + (Do.STOP_JOB,),
    # 401: that input fails; a run of them is the key: out, and stop if nothing can serve
    K.AUTH: (Do.FAIL_INPUT,) * 3 + (Do.COOLDOWN, Do.STOP_JOB),
    # 403: a blocked prompt fails alone; a long run takes the deployment out
    K.FORBIDDEN: (Do.FAIL_INPUT,) * 3 + (Do.COOLDOWN, Do.STOP_JOB),
    # the request itself is wrong, or its own deadline ran out: only that input
    K.BAD_REQUEST: (Do.FAIL_INPUT,) * 5,
    K.DEADLINE: (Do.FAIL_INPUT,) * 5,
}


def test_the_table_covers_every_kind_and_situation_once() -> None:
    assert set(POLICY) == {(k, s) for k in ErrorKind for s in Situation}


@pytest.mark.parametrize("kind", list(ErrorKind))
def test_each_row_of_the_policy(kind: ErrorKind) -> None:
    assert tuple(decide(kind, s) for s in Situation) == EXPECTED[kind]


def test_only_deployment_wide_failures_can_stop_the_job() -> None:
    stoppers = {k for (k, _), o in POLICY.items() if o is Outcome.STOP_JOB}
    assert stoppers == {K.AUTH, K.FORBIDDEN, K.QUOTA, K.NOT_FOUND, K.REDIRECT, K.UNREACHABLE}
    assert all(s is Situation.EVERY_DEPLOYMENT for (_, s), o in POLICY.items() if o is Do.STOP_JOB)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (ServerError("x", status=500), K.TRANSIENT),
        (OverloadedError("x", status=529), K.TRANSIENT),
        (APITimeoutError("x"), K.TRANSIENT),
        (APIConnectionError("reset"), K.TRANSIENT),
        (ResponseTooLargeError("huge"), K.TRANSIENT),
        (RateLimitedError("x", status=429), K.THROTTLED),
        (PoolTimeoutError("no connection free"), K.CLIENT_SIDE),
        (UnreachableError("no route", host="h"), K.UNREACHABLE),
        (QuotaExceededError("insufficient_quota", status=429), K.QUOTA),
        (NotFoundError("no such model", status=404), K.NOT_FOUND),
        (RedirectError("moved", status=301), K.REDIRECT),
        (AuthenticationError("bad key", status=401), K.AUTH),
        (PermissionDeniedError("blocked", status=403), K.FORBIDDEN),
        (BadRequestError("too long", status=400), K.BAD_REQUEST),
        (BadRequestError("too large", status=413), K.BAD_REQUEST),
    ],
)
def test_classify_by_class(error: ProviderError, kind: ErrorKind) -> None:
    assert classify(error) is kind


@pytest.mark.parametrize(
    "error",
    [
        ServerError("x", status=503),
        RateLimitedError("x", status=429),
        PoolTimeoutError("x"),
    ],
)
def test_should_retry_false_turns_usual_retries_into_fallbacks(error: ProviderError) -> None:
    error.should_retry = False
    assert classify(error) is K.DO_NOT_RETRY


def test_should_retry_does_not_override_what_cannot_be_retried() -> None:
    for error in (
        QuotaExceededError("q", status=429),
        AuthenticationError("a", status=401),
        NotFoundError("n", status=404),
    ):
        error.should_retry = True
        assert classify(error) is not K.TRANSIENT
    conflict = BadRequestError("conflict", status=400)
    conflict.should_retry = True
    assert classify(conflict) is K.TRANSIENT


def test_a_foreign_provider_error_is_classified_by_its_retryable_flag() -> None:
    class Flaky(ProviderError):
        retryable = True

    class Broken(ProviderError):
        retryable = False

    assert classify(Flaky("x")) is K.TRANSIENT
    assert classify(Broken("x")) is K.BAD_REQUEST


def test_a_timeout_of_a_call_cut_to_the_deadline_is_the_deadline_s() -> None:
    assert classify(APITimeoutError("slow"), cut_short=True) is K.DEADLINE
    assert classify(APITimeoutError("slow")) is K.TRANSIENT
    assert classify(ServerError("x", status=500), cut_short=True) is K.TRANSIENT


def test_a_served_deployment_is_never_rejected_for_403s_or_lost_connections() -> None:
    from agentic_synth.routing._policy import REJECTED_AFTER

    assert REJECTED_AFTER[K.FORBIDDEN] is None and REJECTED_AFTER[K.UNREACHABLE] is None
    assert all(REJECTED_AFTER[k] for k in (K.AUTH, K.QUOTA, K.NOT_FOUND, K.REDIRECT))
