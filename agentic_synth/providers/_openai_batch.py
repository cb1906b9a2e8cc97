"""OpenAI Batch over our own HTTP: upload a JSONL file, create, poll, download results.

Each line's ``body`` is what an online call sends (the provider's ``_body``), so
:meth:`OpenAIBatchBackend.encoded_size` is exact: the bytes that line adds to the
uploaded file. The backend has its own small aiohttp pool (:mod:`._batch_http`):
output and error files stream line by line, each line bounded by the model's
``max_body_bytes``. Succeeded lines are parsed as online answers are
(``_parse_completion``), failed ones mapped by status and error body as online
errors are (``_status_error``).

Items a canceled or expired batch never ran come back ``canceled`` / ``expired``:
from their ``batch_cancelled`` / ``batch_expired`` lines in the error file, or, for
those in neither file, from the input file (read only when some are missing).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from .._exceptions import APIConnectionError, BadRequestError, ProviderError, redact
from .._spec import ResponseLimits
from ._aiohttp import AiohttpOrigin, AiohttpResponse
from ._batch import (
    BatchCounts,
    BatchItem,
    BatchItemResult,
    BatchLimits,
    BatchOutcome,
    BatchState,
    BatchStatus,
)
from ._batch_http import MAX_RESULTS_BYTES, bounded_lines
from ._http_errors import error_for_type

if TYPE_CHECKING:
    from .openai import OpenAIProvider

__all__ = ["OPENAI_LIMITS", "OpenAIBatchBackend"]

#: 50,000 requests or a 200 MB input file per batch.
OPENAI_LIMITS = BatchLimits(max_requests=50_000, max_bytes=200 * 1024 * 1024)
_ENDPOINT = "/v1/chat/completions"
_STATES: dict[str, BatchState] = {
    "validating": "running",
    "in_progress": "running",
    "finalizing": "running",
    "cancelling": "canceling",
    "completed": "ended",
    "expired": "ended",
    "cancelled": "ended",
    "failed": "failed",
}
_ENDED_AT = ("completed_at", "expired_at", "cancelled_at", "failed_at")
#: Characters kept of a failed batch's reasons.
_MAX_REASON = 500


class OpenAIBatchBackend:
    """A :class:`~._batch.BatchBackend` for one :class:`OpenAIProvider`."""

    provider = "openai"

    def __init__(self, owner: OpenAIProvider) -> None:
        self.limits = OPENAI_LIMITS
        self._owner = owner
        limits = owner._limits
        self._max_line = limits.max_body_bytes
        self._origin = AiohttpOrigin(
            max_connections=4,
            ssl_context=owner._ssl,
            limits=ResponseLimits(
                max_header_bytes=limits.max_header_bytes,
                max_headers=limits.max_headers,
                max_body_bytes=MAX_RESULTS_BYTES,
                read_idle_timeout=limits.read_idle_timeout,
            ),
            proxy=owner._proxy,
            connect_timeout=owner._connect_timeout,
        )
        base = owner._url.with_path(owner._url.path.removesuffix("/chat/completions"))
        self._files = base.with_path(base.path + "/files")
        self._batches = base.with_path(base.path + "/batches")
        self._headers = {k: v for k, v in owner._headers.items() if k.lower() != "content-type"}

    def __repr__(self) -> str:
        return f"OpenAIBatchBackend({self._owner!r})"

    def line(self, item: BatchItem) -> bytes:
        """The item's line of the input file (with its line end)."""
        body = self._owner._body(item.model, item.request, stream=False)
        return b"".join(
            [
                b'{"custom_id":',
                json.dumps(item.custom_id).encode(),
                b',"method":"POST","url":"' + _ENDPOINT.encode() + b'","body":',
                body,
                b"}\n",
            ]
        )

    def encoded_size(self, item: BatchItem) -> int:
        return len(self.line(item))

    # -- HTTP ------------------------------------------------------------------------

    async def _open(
        self, method: str, url: Any, body: bytes | None, content_type: str | None
    ) -> AiohttpResponse:
        headers = dict(self._headers)
        if content_type is not None:
            headers["Content-Type"] = content_type
        try:
            resp = await self._origin.request(method, url, headers, body, deadline=None)
        except Exception as exc:
            raise self._owner._transport_error(exc, "") from exc
        if resp.status >= 300:
            try:
                raw = await self._head(resp)
            finally:
                resp.close()
            raise self._owner._status_error(resp.status, resp.reason, resp.headers, raw, "")
        return resp

    async def _head(self, resp: AiohttpResponse) -> bytes:
        """Up to ``max_body_bytes`` of an error body: enough to read its message."""
        parts: list[bytes] = []
        size = 0
        try:
            async for chunk in resp.chunks():
                parts.append(chunk)
                size += len(chunk)
                if size > self._max_line:
                    break
        except Exception:
            pass  # the status says enough
        return b"".join(parts)[: self._max_line]

    async def _json(
        self, method: str, url: Any, body: bytes | None = None, content_type: str | None = None
    ) -> Any:
        resp = await self._open(method, url, body, content_type)
        try:
            parts = [chunk async for chunk in bounded_lines(resp.chunks(), self._max_line)]
            return json.loads(b"\n".join(parts))
        except ProviderError:
            raise
        except ValueError as exc:
            raise APIConnectionError(
                f"malformed response from {self._owner._host}: {type(exc).__name__}"
            ) from exc
        except Exception as exc:
            raise self._owner._transport_error(exc, "") from exc
        finally:
            resp.close()

    async def _lines(self, file_id: str) -> AsyncIterator[Any]:
        """A file's JSONL lines, parsed, one at a time."""
        url = self._files.with_path(f"{self._files.path}/{file_id}/content")
        resp = await self._open("GET", url, None, None)
        try:
            async for raw in bounded_lines(resp.chunks(), self._max_line):
                try:
                    yield json.loads(raw)
                except ValueError as exc:
                    raise APIConnectionError(
                        f"malformed line in batch file from {self._owner._host}"
                    ) from exc
        except ProviderError:
            raise
        except Exception as exc:
            raise self._owner._transport_error(exc, "") from exc
        finally:
            resp.close()

    # -- the protocol ----------------------------------------------------------------

    async def submit(
        self, items: Sequence[BatchItem], *, metadata: Mapping[str, str] | None = None
    ) -> BatchStatus:
        data = b"".join(self.line(item) for item in items)
        boundary = secrets.token_hex(16)
        form = b"".join(
            [
                f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n'
                "batch\r\n".encode(),
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                'filename="batch.jsonl"\r\nContent-Type: application/jsonl\r\n\r\n'.encode(),
                data,
                f"\r\n--{boundary}--\r\n".encode(),
            ]
        )
        file = await self._json(
            "POST", self._files, form, f"multipart/form-data; boundary={boundary}"
        )
        payload: dict[str, Any] = {
            "input_file_id": _field(file, "id"),
            "endpoint": _ENDPOINT,
            "completion_window": "24h",
        }
        if metadata:
            payload["metadata"] = dict(metadata)
        batch = await self._json(
            "POST", self._batches, json.dumps(payload).encode(), "application/json"
        )
        return self._status(batch)

    async def retrieve(self, batch_id: str) -> BatchStatus:
        return self._status(await self._json("GET", self._batch_url(batch_id)))

    async def cancel(self, batch_id: str) -> BatchStatus:
        url = self._batch_url(batch_id, "/cancel")
        return self._status(await self._json("POST", url, b"", "application/json"))

    async def results(self, batch_id: str) -> AsyncIterator[BatchItemResult]:
        batch = await self._json("GET", self._batch_url(batch_id))
        status = self._status(batch)
        if status.state == "failed":
            raise BadRequestError(f"batch {batch_id} failed: {status.error}")
        if status.state != "ended":
            raise BadRequestError(f"batch {batch_id} has not ended ({status.raw_status})")
        left: BatchOutcome = "expired" if status.raw_status == "expired" else "canceled"
        seen: set[str] = set()
        for key in ("output_file_id", "error_file_id"):
            file_id = batch.get(key)
            if not isinstance(file_id, str) or not file_id:
                continue
            async for line in self._lines(file_id):
                result = self._item(line, left)
                seen.add(result.custom_id)
                yield result
        total = status.counts.total
        input_id = batch.get("input_file_id")
        if len(seen) < total and isinstance(input_id, str):
            # unrun items listed in neither file: their ids are in the input file
            async for line in self._lines(input_id):
                custom_id = line.get("custom_id") if isinstance(line, dict) else None
                if isinstance(custom_id, str) and custom_id not in seen:
                    seen.add(custom_id)
                    yield BatchItemResult(custom_id, left)

    async def aclose(self) -> None:
        """Close this backend's connection pool (the provider's stays open)."""
        await self._origin.aclose()

    # -- mapping ---------------------------------------------------------------------

    def _batch_url(self, batch_id: str, tail: str = "") -> Any:
        if not batch_id or "/" in batch_id or "?" in batch_id:
            raise BadRequestError(f"not a batch id: {batch_id[:80]!r}")
        return self._batches.with_path(f"{self._batches.path}/{batch_id}{tail}")

    def _item(self, line: Any, left: BatchOutcome) -> BatchItemResult:
        owner = self._owner
        if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str):
            raise APIConnectionError(f"malformed line in batch file from {owner._host}")
        custom_id: str = line["custom_id"]
        response = line.get("response")
        if isinstance(response, dict):
            status = response.get("status_code")
            request_id = response.get("request_id")
            raw = json.dumps(response.get("body")).encode()
            headers = {"x-request-id": request_id} if isinstance(request_id, str) else {}
            model = _model(response.get("body"))
            if status == 200:
                try:
                    answer = owner._parse_completion(raw, model, headers.get("x-request-id"), {})
                except ProviderError as exc:
                    return BatchItemResult(custom_id, "errored", error=exc)
                return BatchItemResult(custom_id, "succeeded", response=answer)
            code = status if isinstance(status, int) else 500
            error = owner._status_error(code, None, headers, raw, model)
            return BatchItemResult(custom_id, "errored", error=error)
        error_obj = line.get("error")
        code_name = error_obj.get("code") if isinstance(error_obj, dict) else None
        if code_name == "batch_expired":
            return BatchItemResult(custom_id, "expired")
        if code_name == "batch_cancelled":
            return BatchItemResult(custom_id, "canceled")
        message = error_obj.get("message") if isinstance(error_obj, dict) else None
        mapped = error_for_type(
            code_name if isinstance(code_name, str) else None,
            f"batch item error from {owner._host}: {message or 'no message'}",
            error_code=code_name if isinstance(code_name, str) else None,
            secrets=owner._secrets,
        )
        return BatchItemResult(custom_id, "errored", error=mapped)

    def _status(self, batch: Any) -> BatchStatus:
        if not isinstance(batch, dict) or not isinstance(batch.get("id"), str):
            _malformed(self._owner._host)
        raw = str(batch.get("status") or "")
        state = _STATES.get(raw, "running")
        counts = batch.get("request_counts") or {}
        total = _int(counts.get("total"))
        done, failed = _int(counts.get("completed")), _int(counts.get("failed"))
        rest = max(total - done - failed, 0)
        ended = state == "ended"
        error = None
        if state == "failed":
            errors = (batch.get("errors") or {}).get("data") or []
            reasons = "; ".join(
                f"line {e.get('line')}: {e.get('code')}: {e.get('message')}"
                for e in errors[:5]
                if isinstance(e, dict)
            )
            error = redact(reasons or "no reason given", *self._owner._secrets)[:_MAX_REASON]
        ended_at = next((batch[k] for k in _ENDED_AT if isinstance(batch.get(k), int)), None)
        return BatchStatus(
            id=batch["id"],
            state=state,
            counts=BatchCounts(
                processing=0 if ended or state == "failed" else rest,
                succeeded=done,
                errored=failed,
                canceled=rest if ended and raw == "cancelled" else 0,
                expired=rest if ended and raw == "expired" else 0,
            ),
            raw_status=raw,
            created_at=_float(batch.get("created_at")),
            expires_at=_float(batch.get("expires_at")),
            ended_at=_float(ended_at),
            error=error,
        )


def _field(obj: Any, name: str) -> str:
    value = obj.get(name) if isinstance(obj, dict) else None
    if not isinstance(value, str) or not value:
        raise APIConnectionError(f"malformed response: no {name!r}")
    return value


def _malformed(host: str) -> NoReturn:
    raise APIConnectionError(f"malformed batch object from {host}")


def _model(body: Any) -> str:
    model = body.get("model") if isinstance(body, dict) else None
    return model if isinstance(model, str) else ""


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _float(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None
