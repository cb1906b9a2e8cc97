"""The ``sim`` provider: a simulated model in this process, no network, no key.

Latency, streaming speed, output length and faults come from
:class:`~agentic_synth.simulator.SimConfig` (``ModelSpec.options``). Outcomes
are deterministic per seed and request content, as in the mock server, so a
request gets the same text here and over the wire. With zero latency a call
never suspends (no ``sleep(0)``): the engine around it yields often enough, and
an extra event-loop round trip would cost more than the simulation itself.

Faults become the exceptions the real providers raise for the mock server's
answer to them: HTTP errors go through the same status mapping
(:func:`~agentic_synth.providers._http_errors.error_for_status`) with the
Anthropic API's bodies, and hostile answers (huge headers or bodies, endless
lines, silence) end as a client bounded by ``ModelSpec.response_limits`` ends them.

Prompt caching is simulated on both sides: the provider marks and gates prompts
as the anthropic provider does (:mod:`._prompt_cache`, ``SimConfig.prompt_cache``)
and the simulator's cache (:mod:`agentic_synth.simulator._prompt_cache`) answers
with the writes and reads the API would report. A warm-up answer starts after
the latency (the anthropic provider streams it), any other non-streamed answer
once it is complete; what it wrote is readable from then on.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import NoReturn

import anyio

from .._exceptions import (
    APIConnectionError,
    APITimeoutError,
    OverloadedError,
    ProviderError,
    RateLimitedError,
    ResponseTooLargeError,
    ServerError,
)
from .._spec import ModelSpec, ResponseLimits
from .._types import ProviderResponse, ProviderStreamEnd, Request, TextDelta, Usage
from ..simulator import Outcome, SimConfig, Simulator
from ..simulator._anthropic_wire import AnthropicWire
from ..simulator._batches import BatchEngine
from ..simulator._prompt_cache import Block, CacheUse
from ..simulator._wire import WireError
from ._base import ProviderStreamEvent
from ._http_errors import error_for_status
from ._prompt_cache import Plan, PromptCache, Ticket, gated_stream, prompt_cache_config
from ._sim_batch import SimBatchBackend

__all__ = ["SimProvider", "create", "validate"]

_FINISH = {"end": "end_turn", "max_tokens": "max_tokens", "stop_sequence": "stop_sequence"}
#: Faults that break a stream after some of its deltas.
_MID_STREAM = frozenset({"malformed", "truncate", "stream_error"})
#: Faults where the answer never (fully) comes: the call waits out its timeout.
_HANGS = frozenset({"timeout", "silent_stream", "trickle"})
#: Faults answered with an HTTP error status and the API's own body.
_STATUS_FAULTS = frozenset(
    {"quota", "not_found", "forbidden", "unauthorized", "redirect", "long_retry_after", "no_retry"}
)
#: Where the redirect fault points when the config names no location.
_SIM_LOCATION = "https://sim.invalid/v1/messages"
_WIRE = AnthropicWire()


class SimProvider:
    """In-process simulated model backend (see :class:`SimConfig` for the knobs)."""

    name = "sim"

    def __init__(
        self,
        config: SimConfig | None = None,
        *,
        limits: ResponseLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config = config or SimConfig()
        #: The response limits hostile faults are measured against, as a real client's are.
        self.limits = limits or ResponseLimits()
        #: Outcomes and the provider-side prompt cache (its TTLs run on ``clock``).
        self.simulator = Simulator(config, clock=clock)
        cache = prompt_cache_config(
            {
                "prompt_cache": config.prompt_cache,
                "prompt_cache_min_tokens": config.prompt_cache_min_tokens,
            },
            "sim",
        )
        self._prompt_cache = PromptCache(cache, clock=clock) if cache.enabled else None
        self._clock = clock
        self._batches: SimBatchBackend | None = None

    def __repr__(self) -> str:
        return f"SimProvider({self.config!r})"

    def _plan(self, model: str, request: Request) -> Plan | None:
        cache = self._prompt_cache
        if cache is None:
            return None
        return cache.plan(model, request.system, request.messages)

    def _cache_use(
        self, model: str, request: Request, plan: Plan, outcome: Outcome
    ) -> CacheUse | None:
        """What the provider's cache reads and writes for ``request`` as marked by ``plan``."""
        marks = {point.at: point.ttl for point in plan.breakpoints}
        blocks: list[Block] = []
        if request.system:
            blocks.append((request.system, "s", marks.get(-1)))
        for i, message in enumerate(request.messages):
            blocks.append((message["content"], f"{message['role'][0]}{i}", marks.get(i)))
        return self.simulator.prompt_cache.anthropic(model, blocks, outcome.input_tokens)

    async def complete(self, model: str, request: Request) -> ProviderResponse:
        plan = self._plan(model, request)
        if plan is not None:
            return await self._complete_cached(model, request, plan)
        outcome = self.simulator.decide(request)
        if outcome.fault is not None and self._harms(outcome.fault):
            await self._fail(outcome, model, request, streaming=False)
        delay = outcome.delay + self.simulator.stream_seconds(outcome)
        if delay > 0.0:
            await anyio.sleep(delay)
        return ProviderResponse(
            outcome.text,
            _FINISH[outcome.finish],
            Usage(outcome.input_tokens, outcome.output_tokens),
            f"req_sim_{outcome.token}",
        )

    async def _complete_cached(self, model: str, request: Request, plan: Plan) -> ProviderResponse:
        ticket = plan.ticket()
        try:
            await ticket.wait(request.timeout if request.timeout is not None else self.config.hang)
            outcome = self.simulator.decide(request)
            if outcome.fault is not None and self._harms(outcome.fault):
                await self._fail(outcome, model, request, streaming=False)
            use = self._cache_use(model, request, plan, outcome)
            first, rest = outcome.delay, self.simulator.stream_seconds(outcome)
            if not ticket.leader:
                first, rest = first + rest, 0.0  # a non-streamed answer starts when complete
            await _sleep(first)
            if use is not None:
                self.simulator.prompt_cache.started(use)
            ticket.opened()
            await _sleep(rest)
        finally:
            ticket.close()
        return ProviderResponse(
            outcome.text,
            _FINISH[outcome.finish],
            _usage(outcome, use),
            f"req_sim_{outcome.token}",
        )

    async def _fail(
        self, outcome: Outcome, model: str, request: Request, *, streaming: bool
    ) -> NoReturn:
        await _sleep(outcome.delay)
        if outcome.fault in _HANGS:
            await self._hang(outcome, model, request)
        raise self._error(outcome, model, streaming=streaming)

    def stream(self, model: str, request: Request) -> AsyncIterator[ProviderStreamEvent]:
        plan = self._plan(model, request)
        if plan is None:
            return self._stream(model, request, None, None)
        ticket = plan.ticket()
        hang = request.timeout if request.timeout is not None else self.config.hang

        async def wait() -> Request:
            await ticket.wait(hang)
            return request

        return gated_stream(ticket, wait, lambda ready: self._stream(model, ready, plan, ticket))

    async def _stream(
        self, model: str, request: Request, plan: Plan | None, ticket: Ticket | None
    ) -> AsyncGenerator[ProviderStreamEvent, None]:
        outcome = self.simulator.decide(request)
        fault = outcome.fault
        await _sleep(outcome.delay)
        if fault is not None:
            if not self._harms(fault):
                fault = None
            elif fault in _HANGS:
                await self._hang(outcome, model, request)
            elif fault not in _MID_STREAM:
                raise self._error(outcome, model, streaming=True)
        use = None
        if plan is not None:
            use = self._cache_use(model, request, plan, outcome)
            if use is not None:
                self.simulator.prompt_cache.started(use)
        if ticket is not None:
            ticket.opened()
        config = self.config
        pieces = outcome.pieces(config.stream_chunk_tokens)
        # Mid-stream faults break after a share of the deltas, as on the wire.
        stop_at = len(pieces) if fault is None else int(outcome.u_extra * len(pieces))
        tps = config.tokens_per_s
        if tps is None:
            for piece in pieces[:stop_at]:
                yield TextDelta(piece)
        else:
            interval = config.stream_chunk_tokens / tps
            start = anyio.current_time()
            for i, piece in enumerate(pieces[:stop_at]):
                if i:
                    await anyio.sleep_until(start + i * interval)
                yield TextDelta(piece)
        if fault is not None:
            raise self._error(outcome, model, streaming=True)
        yield ProviderStreamEnd(
            _FINISH[outcome.finish], _usage(outcome, use), f"req_sim_{outcome.token}"
        )

    async def aclose(self) -> None:
        """Nothing to release: the simulator holds no connections."""

    def batch_backend(self) -> SimBatchBackend:
        """The simulated batch API of this model (one per provider; its time runs on the
        provider's ``clock``, its pace on ``SimConfig.batch_*``)."""
        backend = self._batches
        if backend is None:
            engine = BatchEngine(self.config, clock=self._clock)
            backend = self._batches = SimBatchBackend(engine)
        return backend

    def _harms(self, fault: str) -> bool:
        """Whether a client bounded by :attr:`limits` fails on ``fault`` (1xx, and huge
        answers within the limits, are read like any other)."""
        if fault == "interim_1xx":
            return False
        if fault == "huge_headers":
            return self.config.huge_header_bytes > self.limits.max_header_bytes
        if fault == "huge_body":
            size = self.config.huge_body_bytes
            return size == 0 or size > self.limits.max_body_bytes
        return True

    async def _hang(self, outcome: Outcome, model: str, request: Request) -> NoReturn:
        """The answer never comes (or never ends): wait out the request's deadline (or
        the read idle timeout, for silence), then fail like a client would."""
        wait = request.timeout if request.timeout is not None else self.config.hang
        idle = self.limits.read_idle_timeout
        if outcome.fault == "silent_stream" and idle is not None:
            wait = min(wait, idle)
        await anyio.sleep(wait)
        raise APITimeoutError(
            f"request timed out after {wait:g}s (simulated)",
            request_id=f"req_sim_{outcome.token}",
            model=model,
        )

    def _error(self, outcome: Outcome, model: str, *, streaming: bool) -> ProviderError:
        fault = outcome.fault
        request_id = f"req_sim_{outcome.token}"
        config = self.config
        if fault in _STATUS_FAULTS:
            return self._status_error(str(fault), model, request_id)
        if fault == "429":
            return RateLimitedError(
                "rate limit exceeded (simulated)",
                status=429,
                retry_after=config.retry_after,
                request_id=request_id,
                model=model,
            )
        if fault == "529" or fault == "stream_error":
            return OverloadedError(
                "overloaded (simulated)",
                status=529,
                retry_after=config.retry_after if fault == "529" else None,
                request_id=request_id,
                model=model,
            )
        if fault == "500":
            return ServerError(
                "internal server error (simulated)",
                status=500,
                request_id=request_id,
                model=model,
            )
        limits = self.limits
        too_large = {
            "huge_headers": f"response headers over max_header_bytes={limits.max_header_bytes}",
            "huge_body": f"response body over max_body_bytes={limits.max_body_bytes}",
            "endless_sse_line": f"event stream line over max_line_bytes={limits.max_line_bytes}"
            if streaming
            else f"response body over max_body_bytes={limits.max_body_bytes}",
        }
        if fault in too_large:
            return ResponseTooLargeError(
                f"{too_large[str(fault)]} (simulated)", request_id=request_id, model=model
            )
        messages = {
            "reset": "connection reset by peer (simulated)",
            "malformed": "malformed response body (simulated)",
            "truncate": "response ended before it was complete (simulated)",
        }
        return APIConnectionError(
            messages.get(str(fault), f"simulated {fault} failure"),
            request_id=request_id,
            model=model,
        )

    def _status_error(self, fault: str, model: str, request_id: str) -> ProviderError:
        """What the anthropic provider raises for the mock server's answer to ``fault``."""
        config = self.config
        headers = {"request-id": request_id}
        if fault == "redirect":
            location = config.redirect_location or _SIM_LOCATION
            headers["location"] = location
            status = config.redirect_status
            return error_for_status(
                status,
                f"HTTP {status} (simulated): redirected to {location}",
                headers=headers,
                model=model,
            )
        if fault == "long_retry_after":
            error = WireError(429, "rate_limit", "Number of requests has exceeded your rate limit")
            headers["retry-after"] = f"{config.long_retry_after:g}"
        elif fault == "no_retry":
            error = WireError(500, "api_error", "Internal server error")
            headers["x-should-retry"] = "false"
        elif fault == "unauthorized":
            error = _WIRE.auth_error({"x-api-key": "sim"})
        else:
            error = _WIRE.fault_error(fault, model)
        return error_for_status(
            error.status,
            f"HTTP {error.status} (simulated): {error.message}",
            headers=headers,
            error_type=_WIRE.error_type(error),
            model=model,
        )


def _usage(outcome: Outcome, use: CacheUse | None) -> Usage:
    if use is None:
        return Usage(outcome.input_tokens, outcome.output_tokens)
    return Usage(outcome.input_tokens, outcome.output_tokens, use.written, use.read)


async def _sleep(seconds: float) -> None:
    if seconds > 0.0:
        await anyio.sleep(seconds)


def create(spec: ModelSpec, *, max_connections: int) -> SimProvider:
    """Provider for a ``sim:...`` model; ``spec.options`` are :class:`SimConfig` fields."""
    del max_connections  # nothing to pool
    return SimProvider(SimConfig.from_mapping(spec.options), limits=spec.response_limits)


def validate(spec: ModelSpec) -> None:
    """Check ``spec.options`` at construction time (raises ConfigurationError)."""
    SimConfig.from_mapping(spec.options)
