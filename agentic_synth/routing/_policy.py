"""The failure policy: what the router does after a failed call, as one table.

Every failed call is first *classified* (:func:`classify`: which kind of failure
it is), then the router works out the *situation* it happened in (can this
deployment be tried again soon? has it failed this way repeatedly? can any
deployment still serve?), and :data:`POLICY` gives exactly one :class:`Outcome`
for that pair. The router carries the outcome out; no other code decides by
error class.

Reading the table:

* ``RETRY``: try the same deployment again after the backoff delay.
* ``FALLBACK``: give up on this deployment for this request; try the next one.
* ``COOLDOWN``: take the deployment out of rotation (its breaker opens for a
  cooldown, then one probe brings it back), and fall back.
* ``FAIL_INPUT``: this input ends with this error; the job goes on.
* ``STOP_JOB``: no deployment can ever serve (every key rejected, every account
  out of quota, every host unreachable from the start): stop instead of failing
  every remaining input one by one.

When a fallback is asked for and no deployment is left to try, the request
ends with its last error (or waits for a deployment to come back, within its
deadline).
"""

from __future__ import annotations

from enum import StrEnum

from .._exceptions import (
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
    ServerError,
    UnreachableError,
)

__all__ = [
    "POLICY",
    "REJECTED_AFTER",
    "STREAK_KINDS",
    "ErrorKind",
    "Outcome",
    "Situation",
    "classify",
    "decide",
]


class ErrorKind(StrEnum):
    """What went wrong, as far as routing is concerned."""

    #: The provider failed this time (5xx, 529, timeout, reset, malformed answer).
    TRANSIENT = "transient"
    #: 429: too many requests or tokens for now.
    THROTTLED = "throttled"
    #: Our own backlog (no pooled connection free in time): not the provider's fault.
    CLIENT_SIDE = "client_side"
    #: No connection could be made (name not resolved, refused).
    UNREACHABLE = "unreachable"
    #: The server said ``x-should-retry: false`` about a failure that is usually retried.
    DO_NOT_RETRY = "do_not_retry"
    #: The account is out of credit or quota.
    QUOTA = "quota"
    #: 404: no such model (or endpoint) at this deployment.
    NOT_FOUND = "not_found"
    #: 3xx: the base URL points somewhere else.
    REDIRECT = "redirect"
    #: 401: the key is missing or wrong.
    AUTH = "auth"
    #: 403: not allowed: this prompt (a gateway's content block), or this key for this model.
    FORBIDDEN = "forbidden"
    #: 400/413/422: the request itself is wrong.
    BAD_REQUEST = "bad_request"
    #: The request's own deadline ran out during a call whose timeout was cut to it:
    #: our budget, not the provider's fault.
    DEADLINE = "deadline"


class Situation(StrEnum):
    """Where the failure leaves the request and the deployment."""

    #: Another attempt on this deployment is allowed, after a short wait.
    RETRY_SOON = "retry_soon"
    #: Another attempt here is allowed only after a long wait, and another
    #: deployment could take the request now.
    RETRY_LATER = "retry_later"
    #: No attempt left on this deployment (retry budget, deadline, breaker open).
    NO_RETRY_HERE = "no_retry_here"
    #: This deployment failed this way several times in a row with no success
    #: in between (see :data:`STREAK_KINDS`).
    REPEATED = "repeated"
    #: Taking this deployment out would leave no deployment that can ever serve.
    EVERY_DEPLOYMENT = "every_deployment"


class Outcome(StrEnum):
    RETRY = "retry"
    FALLBACK = "fallback"
    COOLDOWN = "cooldown"
    FAIL_INPUT = "fail_input"
    STOP_JOB = "stop_job"


_R, _F, _C, _I, _S = (
    Outcome.RETRY,
    Outcome.FALLBACK,
    Outcome.COOLDOWN,
    Outcome.FAIL_INPUT,
    Outcome.STOP_JOB,
)

#: The whole policy, one row per kind of failure, one column per situation.
# fmt: off
_TABLE: dict[ErrorKind, tuple[Outcome, Outcome, Outcome, Outcome, Outcome]] = {
    #                        RETRY_SOON RETRY_LATER NO_RETRY_HERE REPEATED EVERY_DEPLOYMENT
    ErrorKind.TRANSIENT:    (_R,        _F,         _F,           _F,      _F),
    ErrorKind.THROTTLED:    (_R,        _F,         _F,           _F,      _F),
    ErrorKind.CLIENT_SIDE:  (_R,        _R,         _F,           _F,      _F),
    ErrorKind.UNREACHABLE:  (_R,        _F,         _F,           _C,      _S),
    ErrorKind.DO_NOT_RETRY: (_F,        _F,         _F,           _F,      _F),
    ErrorKind.QUOTA:        (_C,        _C,         _C,           _C,      _S),
    ErrorKind.NOT_FOUND:    (_C,        _C,         _C,           _C,      _S),
    ErrorKind.REDIRECT:     (_C,        _C,         _C,           _C,      _S),
    ErrorKind.AUTH:         (_I,        _I,         _I,           _C,      _S),
    ErrorKind.FORBIDDEN:    (_I,        _I,         _I,           _C,      _S),
    ErrorKind.BAD_REQUEST:  (_I,        _I,         _I,           _I,      _I),
    ErrorKind.DEADLINE:     (_I,        _I,         _I,           _I,      _I),
}
# fmt: on

_COLUMNS = tuple(Situation)

#: ``POLICY[(kind, situation)]``: the one outcome for every pair.
POLICY: dict[tuple[ErrorKind, Situation], Outcome] = {
    (kind, situation): row[i]
    for kind, row in _TABLE.items()
    for i, situation in enumerate(_COLUMNS)
}

#: Kinds whose repeats are counted per deployment: ``REPEATED`` applies once a
#: deployment has failed this way ``BreakerConfig.<field>`` times in a row with no
#: success in between (for UNREACHABLE, spread over ``unreachable_after`` seconds
#: too, so one blip of a wave of concurrent requests is not enough). One 403 is a
#: blocked prompt; a long run of them, a key without access.
STREAK_KINDS: dict[ErrorKind, str] = {
    ErrorKind.AUTH: "auth_failures",
    ErrorKind.FORBIDDEN: "forbidden_failures",
    ErrorKind.UNREACHABLE: "unreachable_failures",
}

#: A deployment taken out (``COOLDOWN``) for one of these kinds is *rejected*,
#: unable to ever serve this job, when it never served a request since the
#: engine opened, or, when it had served, after this many cooldowns in a row for
#: that kind with no success in between (``None``: never; a server that went
#: down mid-job may come back). ``EVERY_DEPLOYMENT`` means all are rejected.
REJECTED_AFTER: dict[ErrorKind, int | None] = {
    ErrorKind.AUTH: 2,
    ErrorKind.QUOTA: 2,
    ErrorKind.NOT_FOUND: 2,
    ErrorKind.REDIRECT: 2,
    # a deployment that has served may be blocking prompts, not refusing the key
    ErrorKind.FORBIDDEN: None,
    ErrorKind.UNREACHABLE: None,
}

#: How each exception class is seen; the first matching row wins.
_CLASSES: tuple[tuple[type[ProviderError], ErrorKind], ...] = (
    (QuotaExceededError, ErrorKind.QUOTA),
    (RedirectError, ErrorKind.REDIRECT),
    (NotFoundError, ErrorKind.NOT_FOUND),
    (PermissionDeniedError, ErrorKind.FORBIDDEN),
    (AuthenticationError, ErrorKind.AUTH),
    (BadRequestError, ErrorKind.BAD_REQUEST),
    (PoolTimeoutError, ErrorKind.CLIENT_SIDE),
    (UnreachableError, ErrorKind.UNREACHABLE),
    (RateLimitedError, ErrorKind.THROTTLED),
    (OverloadedError, ErrorKind.TRANSIENT),
    (ServerError, ErrorKind.TRANSIENT),
    (APITimeoutError, ErrorKind.TRANSIENT),
    (APIConnectionError, ErrorKind.TRANSIENT),
)

#: Kinds a server's ``x-should-retry: false`` turns into ``DO_NOT_RETRY``.
_USUALLY_RETRIED = frozenset({ErrorKind.TRANSIENT, ErrorKind.THROTTLED, ErrorKind.CLIENT_SIDE})


def classify(error: ProviderError, *, cut_short: bool = False) -> ErrorKind:
    """The kind of ``error``, from its class and the server's ``x-should-retry``.

    ``cut_short``: the call's timeout had been cut to what was left of the
    request's deadline, so a timeout is the deadline's, not the provider's.
    """
    if cut_short and isinstance(error, APITimeoutError):
        return ErrorKind.DEADLINE
    kind = next((k for cls, k in _CLASSES if isinstance(error, cls)), None)
    if kind is None:  # a ProviderError subclass of someone else's
        kind = ErrorKind.TRANSIENT if error.retryable else ErrorKind.BAD_REQUEST
    if error.should_retry is False and kind in _USUALLY_RETRIED:
        return ErrorKind.DO_NOT_RETRY
    if error.should_retry is True and kind is ErrorKind.BAD_REQUEST:
        return ErrorKind.TRANSIENT  # the server knows this one passes (a conflict, a lock)
    return kind


def decide(kind: ErrorKind, situation: Situation) -> Outcome:
    """The outcome for ``kind`` in ``situation`` (a lookup in :data:`POLICY`)."""
    return POLICY[(kind, situation)]
