"""The ``sim`` provider: a simulated model in this process, no network, no key.

Latency, streaming speed, output length and faults come from
:class:`~agentic_synth.simulator.SimConfig` (``ModelSpec.options``). Outcomes
are deterministic per seed and request content, as in the mock server, so a
request gets the same text here and over the wire. With zero latency a call
never suspends (no ``sleep(0)``): the engine around it yields often enough, and
an extra event-loop round trip would cost more than the simulation itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import NoReturn

import anyio

from .._exceptions import (
    APIConnectionError,
    APITimeoutError,
    OverloadedError,
    ProviderError,
    RateLimitedError,
    ServerError,
)
from .._spec import ModelSpec
from .._types import ProviderResponse, ProviderStreamEnd, Request, TextDelta, Usage
from ..simulator import Outcome, SimConfig, Simulator
from ._base import ProviderStreamEvent

__all__ = ["SimProvider", "create", "validate"]

_FINISH = {"end": "end_turn", "max_tokens": "max_tokens", "stop_sequence": "stop_sequence"}


class SimProvider:
    """In-process simulated model backend (see :class:`SimConfig` for the knobs)."""

    name = "sim"

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.simulator = Simulator(self.config)

    def __repr__(self) -> str:
        return f"SimProvider({self.config!r})"

    async def complete(self, model: str, request: Request) -> ProviderResponse:
        outcome = self.simulator.decide(request)
        if outcome.fault is not None:
            await _sleep(outcome.delay)
            if outcome.fault == "timeout":
                await self._hang(outcome, model, request)
            raise self._error(outcome, model)
        delay = outcome.delay + self.simulator.stream_seconds(outcome)
        if delay > 0.0:
            await anyio.sleep(delay)
        return ProviderResponse(
            outcome.text,
            _FINISH[outcome.finish],
            Usage(outcome.input_tokens, outcome.output_tokens),
            f"req_sim_{outcome.token}",
        )

    async def stream(self, model: str, request: Request) -> AsyncIterator[ProviderStreamEvent]:
        outcome = self.simulator.decide(request)
        fault = outcome.fault
        await _sleep(outcome.delay)
        if fault == "timeout":
            await self._hang(outcome, model, request)
        elif fault in ("429", "500", "529", "reset"):
            raise self._error(outcome, model)
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
            raise self._error(outcome, model)
        yield ProviderStreamEnd(
            _FINISH[outcome.finish],
            Usage(outcome.input_tokens, outcome.output_tokens),
            f"req_sim_{outcome.token}",
        )

    async def aclose(self) -> None:
        """Nothing to release: the simulator holds no connections."""

    async def _hang(self, outcome: Outcome, model: str, request: Request) -> NoReturn:
        """The timeout fault: wait out the request's deadline, then fail like a client would."""
        wait = request.timeout if request.timeout is not None else self.config.hang
        await anyio.sleep(wait)
        raise APITimeoutError(
            f"request timed out after {wait:g}s (simulated)",
            request_id=f"req_sim_{outcome.token}",
            model=model,
        )

    def _error(self, outcome: Outcome, model: str) -> ProviderError:
        fault = outcome.fault
        request_id = f"req_sim_{outcome.token}"
        if fault == "429":
            return RateLimitedError(
                "rate limit exceeded (simulated)",
                status=429,
                retry_after=self.config.retry_after,
                request_id=request_id,
                model=model,
            )
        if fault == "529" or fault == "stream_error":
            return OverloadedError(
                "overloaded (simulated)",
                status=529,
                retry_after=self.config.retry_after if fault == "529" else None,
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


async def _sleep(seconds: float) -> None:
    if seconds > 0.0:
        await anyio.sleep(seconds)


def create(spec: ModelSpec, *, max_connections: int) -> SimProvider:
    """Provider for a ``sim:...`` model; ``spec.options`` are :class:`SimConfig` fields."""
    del max_connections  # nothing to pool
    return SimProvider(SimConfig.from_mapping(spec.options))


def validate(spec: ModelSpec) -> None:
    """Check ``spec.options`` at construction time (raises ConfigurationError)."""
    SimConfig.from_mapping(spec.options)
