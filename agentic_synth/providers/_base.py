"""The provider protocol: how the engine talks to one model backend.

A provider turns a canonical :class:`~agentic_synth._types.Request` into its
wire format, sends it, and maps failures onto the
:class:`~agentic_synth._exceptions.ProviderError` classes. It does not retry:
the router owns retries, fallback and rate limits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from .._types import ProviderResponse, ProviderStreamEnd, Request, TextDelta

__all__ = ["Provider", "ProviderStreamEvent"]

ProviderStreamEvent = TextDelta | ProviderStreamEnd


@runtime_checkable
class Provider(Protocol):
    #: Registry name, the part before ``:`` in a model string.
    name: str

    async def complete(self, model: str, request: Request) -> ProviderResponse:
        """Send one request and return the whole answer, or raise a ProviderError."""
        ...

    def stream(self, model: str, request: Request) -> AsyncIterator[ProviderStreamEvent]:
        """Yield text deltas then exactly one ProviderStreamEnd.

        Must be an async generator (or behave like one): closing it early
        (``aclose()``, cancellation) closes the underlying connection at once.
        """
        ...

    async def aclose(self) -> None:
        """Release connections; the provider is not used afterwards."""
        ...
