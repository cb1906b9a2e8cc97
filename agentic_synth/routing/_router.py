"""The router: pick a model for a request, send it, fall back down the list.

This is the foundation router (priority order, fallback on provider faults);
breakers, retries and client-side rate limits plug in per model slot.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from .._exceptions import ProviderError
from .._spec import ModelSpec
from .._types import ProviderResponse, ProviderStreamEnd, Request, TextDelta
from ..monitor import Metrics
from ..providers import Provider

__all__ = ["Routed", "Router"]


@dataclass(slots=True)
class Routed:
    """Which model answered, after how many attempts and fallbacks."""

    model: str
    attempts: int
    fallbacks: tuple[str, ...]
    response: ProviderResponse | None = None


class _Slot:
    __slots__ = ("in_flight", "name", "provider", "spec")

    def __init__(self, spec: ModelSpec, provider: Provider) -> None:
        self.spec = spec
        self.provider = provider
        self.name = spec.name
        self.in_flight = 0


class Router:
    def __init__(
        self,
        models: Sequence[tuple[ModelSpec, Provider]],
        *,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._slots = [_Slot(spec, provider) for spec, provider in models]
        self._metrics = metrics
        self._clock = clock

    @property
    def model_names(self) -> list[str]:
        return [s.name for s in self._slots]

    async def complete(self, request: Request) -> Routed:
        """Send ``request``; on a provider fault, fall back to the next model."""
        metrics = self._metrics
        fallbacks: list[str] = []
        attempts = 0
        last: ProviderError | None = None
        for slot in self._slots:
            attempts += 1
            slot.in_flight += 1
            started = self._clock()
            try:
                response = await slot.provider.complete(slot.spec.model, request)
            except ProviderError as exc:
                exc.model = exc.model or slot.name
                metrics.attempt_failed(slot.name, exc)
                last = exc
                if not exc.retryable:
                    exc.attempts = attempts
                    raise
                fallbacks.append(slot.name)
                continue
            finally:
                slot.in_flight -= 1
            usage = response.usage
            metrics.attempt_succeeded(
                slot.name,
                self._clock() - started,
                usage.input_tokens,
                usage.output_tokens,
                usage.input_tokens * slot.spec.input_price
                + usage.output_tokens * slot.spec.output_price,
            )
            if fallbacks:
                metrics.fallbacks += 1
            return Routed(slot.name, attempts, tuple(fallbacks), response)
        assert last is not None
        last.attempts = attempts
        raise last

    async def stream(
        self, request: Request, routed: Routed
    ) -> AsyncIterator[TextDelta | ProviderStreamEnd]:
        """Stream from the first model that starts answering; fill in ``routed``."""
        metrics = self._metrics
        for slot in self._slots:
            routed.attempts += 1
            started = self._clock()
            delivered = False
            slot.in_flight += 1
            try:
                async for event in slot.provider.stream(slot.spec.model, request):
                    if isinstance(event, ProviderStreamEnd):
                        usage = event.usage
                        metrics.attempt_succeeded(
                            slot.name,
                            self._clock() - started,
                            usage.input_tokens,
                            usage.output_tokens,
                            usage.input_tokens * slot.spec.input_price
                            + usage.output_tokens * slot.spec.output_price,
                        )
                        routed.model = slot.name
                        if routed.fallbacks:
                            metrics.fallbacks += 1
                    delivered = True
                    yield event
                return
            except ProviderError as exc:
                exc.model = exc.model or slot.name
                metrics.attempt_failed(slot.name, exc)
                if delivered or not exc.retryable:
                    exc.attempts = routed.attempts
                    raise
                routed.fallbacks += (slot.name,)
                last = exc
            finally:
                slot.in_flight -= 1
        last.attempts = routed.attempts
        raise last

    async def aclose(self) -> None:
        seen: set[int] = set()
        for slot in self._slots:
            if id(slot.provider) not in seen:
                seen.add(id(slot.provider))
                await slot.provider.aclose()
