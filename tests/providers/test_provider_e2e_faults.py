"""End to end against the simulator's mock server: every provider path (the OpenAI
provider on both transports, the official Anthropic SDK through our transport) meets
each fault the way a real deployment shows it, and the next request is served."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from scripted_server import KINDS, assert_no_key, build, call

from agentic_synth._exceptions import (
    APITimeoutError,
    AuthenticationError,
    NotFoundError,
    ProviderError,
    QuotaExceededError,
    RateLimitedError,
    RedirectError,
    ResponseTooLargeError,
    ServerError,
)
from agentic_synth._spec import ResponseLimits
from agentic_synth.simulator import MockServer, SimConfig

SMALL = ResponseLimits(
    max_header_bytes=32 * 1024,
    max_body_bytes=256 * 1024,
    max_line_bytes=32 * 1024,
    max_event_bytes=64 * 1024,
)


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


# (fault, streamed modes, expected class, extra SimConfig, call timeout)
CASES: list[tuple[str, tuple[bool, ...], type[ProviderError], dict[str, Any], float]] = [
    ("quota", (False, True), QuotaExceededError, {}, 5.0),
    ("not_found", (False, True), NotFoundError, {}, 5.0),
    ("redirect", (False, True), RedirectError, {}, 5.0),
    ("no_retry", (False,), ServerError, {}, 5.0),
    ("long_retry_after", (False,), RateLimitedError, {}, 5.0),
    ("huge_headers", (False, True), ResponseTooLargeError, {}, 5.0),
    ("huge_body", (False, True), ResponseTooLargeError, {}, 5.0),
    ("endless_sse_line", (True,), ResponseTooLargeError, {}, 5.0),
    ("silent_stream", (True,), APITimeoutError, {}, 0.4),
    ("trickle", (True,), APITimeoutError, {"trickle_interval": 0.05}, 0.4),
]


@pytest.mark.parametrize(
    ("fault", "streamed", "cls", "config", "call_timeout"),
    [
        (fault, streamed, cls, config, timeout)
        for fault, modes, cls, config, timeout in CASES
        for streamed in modes
    ],
)
@pytest.mark.parametrize("kind", KINDS)
async def test_e2e_fault_then_served(
    kind: str,
    fault: str,
    streamed: bool,
    cls: type[ProviderError],
    config: dict[str, Any],
    call_timeout: float,
) -> None:
    sim = SimConfig(fail_first_n=1, fail_first_kind=fault, seed=3, **config)
    async with MockServer(sim) as server:
        p = build(kind, server.url, timeout=call_timeout, response_limits=SMALL)
        try:
            with anyio.fail_after(20), pytest.raises(cls) as info:  # a guard against hangs
                await call(p, streamed=streamed)
            exc = info.value
            assert type(exc) is cls or (cls is ServerError and isinstance(exc, ServerError))
            assert_no_key(exc)
            if fault == "redirect":
                assert exc.location and exc.location.startswith("https://")
                assert "https://, not http://" in exc.message
            if fault == "no_retry":
                assert exc.should_retry is False
            if fault == "long_retry_after":
                assert exc.retry_after == 60.0
            events = await call(p, streamed=streamed, timeout=10.0)  # the next one is served
            assert events
        finally:
            await p.aclose()


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize("kind", KINDS)
async def test_e2e_interim_1xx_answers_are_skipped(kind: str, streamed: bool) -> None:
    async with MockServer(SimConfig(fail_first_n=1, fail_first_kind="interim_1xx")) as server:
        p = build(kind, server.url, timeout=5.0)
        try:
            events = await call(p, streamed=streamed)
        finally:
            await p.aclose()
    assert events


@pytest.mark.parametrize("kind", KINDS)
async def test_e2e_unknown_key(kind: str) -> None:
    async with MockServer(SimConfig(unauthorized=True)) as server:
        p = build(kind, server.url, timeout=5.0)
        try:
            with pytest.raises(AuthenticationError) as info:
                await call(p, streamed=False)
        finally:
            await p.aclose()
    assert info.value.status == 401 and not info.value.retryable
    assert_no_key(info.value)
