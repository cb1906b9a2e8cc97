"""The ``sim`` provider's batch backend: the simulator's batch engine in this process.

No HTTP: :class:`~agentic_synth.simulator._batches.BatchEngine` answers directly,
with Anthropic's rules (ids ``[A-Za-z0-9_-]{1,64}``, 100,000 requests or 256 MB a
batch) and Anthropic's error types mapped as an online call maps them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from .._exceptions import BadRequestError, NotFoundError, ProviderError
from .._types import ProviderResponse, Request, Usage
from ..simulator._anthropic_wire import AnthropicWire
from ..simulator._batches import BatchEngine, BatchError, BatchView, EngineItem, ItemResult
from ._batch import (
    BatchCounts,
    BatchItem,
    BatchItemResult,
    BatchLimits,
    BatchState,
    BatchStatus,
)
from ._http_errors import error_for_status

__all__ = ["SIM_LIMITS", "SimBatchBackend", "anthropic_item_size", "batch_status"]

#: Anthropic's limits: 100,000 requests or 256 MB of request body per batch.
SIM_LIMITS = BatchLimits(max_requests=100_000, max_bytes=256 * 1024 * 1024)
_FINISH = {"end": "end_turn", "max_tokens": "max_tokens", "stop_sequence": "stop_sequence"}
_WIRE = AnthropicWire()


def anthropic_item_size(custom_id: str, params: Mapping[str, Any]) -> int:
    """Bytes one ``{"custom_id", "params"}`` entry adds to a create body (and its comma)."""
    entry = {"custom_id": custom_id, "params": params}
    return len(json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode()) + 1


def _params(model: str, request: Request) -> dict[str, Any]:
    """The Messages API body the sim stands in for (what the size is measured on)."""
    body: dict[str, Any] = {
        "model": model,
        "messages": request.messages,
        "max_tokens": request.max_tokens,
    }
    if request.system:
        body["system"] = request.system
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    if request.json_schema is not None:
        body["output_config"] = {"format": {"type": "json_schema", "schema": request.json_schema}}
    if request.extra:
        body.update(request.extra)
    return body


def batch_status(view: BatchView) -> BatchStatus:
    """Our status for an engine view (Anthropic's words as ``raw_status``)."""
    state: BatchState = "running"
    if view.processing == "canceling":
        state = "canceling"
    elif view.processing == "ended":
        state = "ended"
    return BatchStatus(
        id=view.id,
        state=state,
        counts=BatchCounts(
            processing=view.processing_count,
            succeeded=view.succeeded,
            errored=view.errored,
            canceled=view.canceled,
            expired=view.expired,
        ),
        raw_status=view.processing,
        created_at=view.created_at,
        expires_at=view.expires_at,
        ended_at=view.ended_at,
    )


class SimBatchBackend:
    """A :class:`~._batch.BatchBackend` over one :class:`BatchEngine`."""

    provider = "sim"

    def __init__(self, engine: BatchEngine) -> None:
        self.engine = engine
        self.limits = SIM_LIMITS

    def __repr__(self) -> str:
        return f"SimBatchBackend(batches_created={self.engine.stats.batches_created})"

    def encoded_size(self, item: BatchItem) -> int:
        return anthropic_item_size(item.custom_id, _params(item.model, item.request))

    async def submit(
        self, items: Sequence[BatchItem], *, metadata: Mapping[str, str] | None = None
    ) -> BatchStatus:
        engine = self.engine
        try:
            batch = engine.create(
                [EngineItem(i.custom_id, i.model, i.request) for i in items],
                prefix="simbatch_",
                metadata=metadata,
                max_requests=self.limits.max_requests,
            )
        except BatchError as exc:
            raise _error(exc) from None
        return batch_status(engine.created_view(batch))

    async def retrieve(self, batch_id: str) -> BatchStatus:
        engine = self.engine
        try:
            return batch_status(engine.view(engine.get(batch_id)))
        except BatchError as exc:
            raise _error(exc) from None

    async def results(self, batch_id: str) -> AsyncIterator[BatchItemResult]:
        try:
            found = self.engine.results(batch_id)
        except BatchError as exc:
            raise _error(exc) from None
        for result in found:
            yield _item_result(result)

    async def cancel(self, batch_id: str) -> BatchStatus:
        engine = self.engine
        try:
            return batch_status(engine.cancel(batch_id))
        except BatchError as exc:
            raise _error(exc) from None

    async def aclose(self) -> None:
        """Nothing to release: no connections."""


def _error(exc: BatchError) -> ProviderError:
    if exc.status == 404:
        return NotFoundError(f"HTTP 404 (simulated): {exc.message}", status=404)
    return BadRequestError(f"HTTP {exc.status} (simulated): {exc.message}", status=exc.status)


def _item_result(result: ItemResult) -> BatchItemResult:
    outcome = result.outcome
    if result.state == "succeeded" and outcome is not None:
        response = ProviderResponse(
            outcome.text,
            _FINISH[outcome.finish],
            Usage(outcome.input_tokens, outcome.output_tokens),
            f"req_sim_{outcome.token}",
        )
        return BatchItemResult(result.custom_id, "succeeded", response=response)
    error = result.error
    if result.state == "errored" and error is not None:
        mapped = error_for_status(
            error.status,
            f"HTTP {error.status} (simulated): {error.message}",
            error_type=_WIRE.error_type(error),
            model=result.model,
        )
        return BatchItemResult(result.custom_id, "errored", error=mapped)
    return BatchItemResult(result.custom_id, result.state)
