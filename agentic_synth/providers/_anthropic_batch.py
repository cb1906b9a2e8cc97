"""Anthropic Message Batches through the official SDK (``client.messages.batches``).

Each item's ``params`` are what an online call sends (the provider's ``_params``,
without prompt-cache marks). The SDK client is a copy of the provider's with its
own pool (:mod:`._batch_http`): results stream line by line, each line bounded by
``max_body_bytes``, and only the base URL's origin is ever contacted. Errors map
as the online calls' do (the provider's ``_map_error``); an ``errored`` item's
error type maps through the same table (:func:`error_for_type`).

Message Batches take no metadata: ``submit(metadata=...)`` is not sent.
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, NoReturn

import anthropic
import httpx2

from .._exceptions import APIConnectionError, BadRequestError, ProviderError
from .._spec import ResponseLimits
from .._types import ProviderResponse
from ._aiohttp import AiohttpOrigin
from ._batch import BatchCounts, BatchItem, BatchItemResult, BatchLimits, BatchState, BatchStatus
from ._batch_http import MAX_RESULTS_BYTES, BatchSDKTransport
from ._http_errors import error_for_type
from ._sdk_transport import DEADLINE, SDKTransport
from ._sim_batch import anthropic_item_size
from .anthropic import AnthropicProvider, _usage

__all__ = ["ANTHROPIC_LIMITS", "AnthropicBatchBackend"]

#: 100,000 requests or 256 MB of request body per batch.
ANTHROPIC_LIMITS = BatchLimits(max_requests=100_000, max_bytes=256 * 1024 * 1024)
_STATES: dict[str, BatchState] = {
    "in_progress": "running",
    "canceling": "canceling",
    "ended": "ended",
}
#: ``messages.create`` keyword arguments that are not body fields.
_NOT_BODY = ("timeout", "extra_headers", "extra_body")


def _seconds(value: datetime.datetime | None) -> float | None:
    return None if value is None else value.timestamp()


class AnthropicBatchBackend:
    """A :class:`~._batch.BatchBackend` for one :class:`AnthropicProvider`."""

    provider = "anthropic"

    def __init__(self, owner: AnthropicProvider, *, limits: ResponseLimits, **origin: Any) -> None:
        self.limits = ANTHROPIC_LIMITS
        self._owner = owner
        base = owner._client.base_url
        self._origin = AiohttpOrigin(
            max_connections=4,
            limits=ResponseLimits(
                max_header_bytes=limits.max_header_bytes,
                max_headers=limits.max_headers,
                max_body_bytes=MAX_RESULTS_BYTES,
                read_idle_timeout=limits.read_idle_timeout,
            ),
            **origin,
        )
        transport = BatchSDKTransport(
            SDKTransport(self._origin), origin=base, max_line=limits.max_body_bytes
        )
        self._client = owner._client.copy(
            http_client=httpx2.AsyncClient(
                transport=transport,
                timeout=owner._client.timeout,
                follow_redirects=False,
                trust_env=False,
            )
        )

    def __repr__(self) -> str:
        return f"AnthropicBatchBackend({self._owner!r})"

    def params(self, item: BatchItem) -> dict[str, Any]:
        """The item's ``params``: the online call's body, without cache marks."""
        owner = self._owner
        kwargs = owner._params(item.model, item.request, owner._system(item.request))
        extra = kwargs.pop("extra_body", None) or {}
        body = {k: v for k, v in kwargs.items() if k not in _NOT_BODY}
        body.update(extra)
        return body

    def encoded_size(self, item: BatchItem) -> int:
        return anthropic_item_size(item.custom_id, self.params(item))

    def _raise(self, exc: Exception, model: str = "") -> NoReturn:
        error, cause = self._owner._map_error(exc, model)
        raise error from cause

    async def submit(
        self, items: Sequence[BatchItem], *, metadata: Mapping[str, str] | None = None
    ) -> BatchStatus:
        del metadata  # not part of the Message Batches API
        requests: list[Any] = [
            {"custom_id": item.custom_id, "params": self.params(item)} for item in items
        ]
        model = items[0].model if items else ""
        try:
            batch = await self._client.messages.batches.create(requests=requests)
        except Exception as exc:
            self._raise(exc, model)
        return _status(batch)

    async def retrieve(self, batch_id: str) -> BatchStatus:
        try:
            batch = await self._client.messages.batches.retrieve(batch_id)
        except Exception as exc:
            self._raise(exc)
        return _status(batch)

    async def cancel(self, batch_id: str) -> BatchStatus:
        try:
            batch = await self._client.messages.batches.cancel(batch_id)
        except Exception as exc:
            self._raise(exc)
        return _status(batch)

    async def results(self, batch_id: str) -> AsyncIterator[BatchItemResult]:
        # No deadline over the whole file: it may take long; silence is bounded by
        # read_idle_timeout, each line by max_body_bytes.
        token = DEADLINE.set(None)
        try:
            try:
                decoder = await self._client.messages.batches.results(batch_id)
            except anthropic.APIError as exc:
                self._raise(exc)
            except anthropic.AnthropicError as exc:
                # the SDK's own check: the batch has no results_url yet
                raise BadRequestError(
                    f"batch {batch_id} has no results yet (it has not ended)"
                ) from exc
            except Exception as exc:
                self._raise(exc)
        finally:
            DEADLINE.reset(token)
        try:
            async for line in decoder:
                yield self._item(line)
        except ProviderError:
            raise
        except Exception as exc:
            self._raise(exc)
        finally:
            await decoder.close()

    def _item(self, line: Any) -> BatchItemResult:
        custom_id = line.custom_id
        result = line.result
        kind = result.type
        if kind == "succeeded":
            message = result.message
            text = "".join(
                getattr(block, "text", "")
                for block in message.content
                if getattr(block, "type", None) == "text"
            )
            response = ProviderResponse(
                text,
                message.stop_reason or "unknown",
                _usage(message.usage),
                getattr(message, "id", None),
            )
            return BatchItemResult(custom_id, "succeeded", response=response)
        if kind == "errored":
            error = result.error
            inner = getattr(error, "error", None)
            error_type = getattr(inner, "type", None)
            message_text = getattr(inner, "message", None) or "no message"
            owner = self._owner
            mapped = error_for_type(
                error_type,
                f"{error_type or 'error'} for batch item {custom_id}: {message_text}",
                api_key=owner._api_key,
                secrets=owner._secrets,
            )
            mapped.request_id = getattr(error, "request_id", None)
            return BatchItemResult(custom_id, "errored", error=mapped)
        if kind in ("canceled", "expired"):
            return BatchItemResult(custom_id, kind)
        raise APIConnectionError(f"unknown result type {str(kind)[:40]!r} for batch item")

    async def aclose(self) -> None:
        """Close this backend's connection pool (the provider's stays open)."""
        await self._client.close()


def _status(batch: Any) -> BatchStatus:
    counts = batch.request_counts
    return BatchStatus(
        id=batch.id,
        state=_STATES.get(batch.processing_status, "running"),
        counts=BatchCounts(
            processing=counts.processing,
            succeeded=counts.succeeded,
            errored=counts.errored,
            canceled=counts.canceled,
            expired=counts.expired,
        ),
        raw_status=str(batch.processing_status),
        created_at=_seconds(batch.created_at),
        expires_at=_seconds(batch.expires_at),
        ended_at=_seconds(batch.ended_at),
    )
