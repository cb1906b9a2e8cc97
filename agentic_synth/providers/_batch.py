"""Provider batch APIs behind one protocol: submit many requests, poll, collect.

Anthropic Message Batches and OpenAI Batch both take up to tens of thousands of
requests at half the price and answer within 24 hours. A provider that offers
one returns a :class:`BatchBackend` from ``provider.batch_backend()``; the batch
job (:mod:`agentic_synth.batch`) plans, persists, polls and collects through it
and never sees a wire format.

Every item carries a ``custom_id`` chosen by the job (``[A-Za-z0-9_-]{1,64}``,
the stricter of the two providers' rules); results come back keyed by it, in any
order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from .._exceptions import ProviderError
from .._types import ProviderResponse, Request

__all__ = [
    "BatchBackend",
    "BatchCounts",
    "BatchItem",
    "BatchItemResult",
    "BatchLimits",
    "BatchOutcome",
    "BatchState",
    "BatchStatus",
]

#: ``running``: accepted and being processed (OpenAI's validating, in_progress,
#: finalizing; Anthropic's in_progress). ``canceling``: a cancel was asked for and
#: has not finished. ``ended``: results (possibly partial) can be read.
#: ``failed``: the batch as a whole was refused (OpenAI ``failed``: a malformed
#: file); no item has a result, ``BatchStatus.error`` says why.
BatchState = Literal["running", "canceling", "ended", "failed"]

#: What became of one item of an ended batch.
BatchOutcome = Literal["succeeded", "errored", "canceled", "expired"]


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """What one batch may hold; the job splits larger work across batches."""

    #: Requests per batch (Anthropic: 100,000; OpenAI: 50,000).
    max_requests: int
    #: Bytes of the encoded batch (Anthropic: 256 MB of request body; OpenAI: 200 MB
    #: input file). Measured with :meth:`BatchBackend.encoded_size`.
    max_bytes: int


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One request of a batch."""

    custom_id: str
    #: The provider's model name (``claude-haiku-4-5``, not ``anthropic:...``).
    model: str
    request: Request


@dataclass(slots=True)
class BatchCounts:
    """Items by state, as the provider reports them."""

    processing: int = 0
    succeeded: int = 0
    errored: int = 0
    canceled: int = 0
    expired: int = 0

    @property
    def total(self) -> int:
        return self.processing + self.succeeded + self.errored + self.canceled + self.expired


@dataclass(slots=True)
class BatchStatus:
    """A batch as last seen on the provider."""

    id: str
    state: BatchState
    counts: BatchCounts = field(default_factory=BatchCounts)
    #: The provider's own status word (``in_progress``, ``finalizing``, ``ended``...).
    raw_status: str = ""
    #: Unix seconds, when the provider gives them.
    created_at: float | None = None
    expires_at: float | None = None
    ended_at: float | None = None
    #: Why a ``failed`` batch was refused (redacted, bounded).
    error: str | None = None


@dataclass(slots=True)
class BatchItemResult:
    """The result of one item of an ended batch."""

    custom_id: str
    outcome: BatchOutcome
    #: The answer, when ``outcome == "succeeded"``: text, provider finish reason, usage.
    response: ProviderResponse | None = None
    #: When ``outcome == "errored"``: the item's error as one of our ProviderError
    #: classes (the HTTP status / error type mapped as for an online call).
    error: ProviderError | None = None


@runtime_checkable
class BatchBackend(Protocol):
    """One provider deployment's batch API."""

    #: ``anthropic``, ``openai`` or ``sim``.
    provider: str
    limits: BatchLimits

    def encoded_size(self, item: BatchItem) -> int:
        """Bytes ``item`` adds to a batch (its wire encoding), for splitting by
        :attr:`BatchLimits.max_bytes`."""
        ...

    async def submit(
        self, items: Sequence[BatchItem], *, metadata: Mapping[str, str] | None = None
    ) -> BatchStatus:
        """Create one batch of ``items`` (within :attr:`limits`); returns at once,
        with the new batch's id, without waiting for processing."""
        ...

    async def retrieve(self, batch_id: str) -> BatchStatus:
        """The batch's current status."""
        ...

    def results(self, batch_id: str) -> AsyncIterator[BatchItemResult]:
        """Every item's result of an ended batch, streamed (memory stays bounded
        whatever the batch size), in any order. Items of a canceled or expired
        batch that never ran come back as ``canceled`` / ``expired``."""
        ...

    async def cancel(self, batch_id: str) -> BatchStatus:
        """Ask the provider to stop the batch; what finished stays readable."""
        ...

    async def aclose(self) -> None:
        """Release the backend's own connections (the provider's ``aclose`` does it too)."""
        ...
