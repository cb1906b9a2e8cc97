"""The mock server's batch routes: Anthropic Message Batches and OpenAI Files + Batch.

Both sit on one :class:`~._batches.BatchEngine`; each renders it in its API's
shapes (the ``anthropic`` SDK's ``MessageBatch`` and result types; OpenAI's batch,
file and output/error line objects). Anthropic validates a create at once (400s)
and errs per item on bad ``params``; OpenAI, as the real service does, accepts a
batch and then fails it as a whole (``status: failed`` with ``errors``) when a line
of its file is malformed, repeats a ``custom_id``, or names another method, URL or
model. Anthropic reports item counts other than ``processing`` only once a batch
has ended (as its API documents); OpenAI's ``completed``/``failed`` move as items finish.

Memory: the engine bounds the batches; uploaded files are kept up to
:data:`MAX_FILES` and :data:`MAX_STORED_FILE_BYTES`, oldest dropped first.
"""

from __future__ import annotations

import json
import re
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from .._core import fingerprint  # type: ignore[import-not-found,unused-ignore]
from .._types import Request
from ._anthropic_wire import AnthropicWire
from ._batches import BatchEngine, BatchError, BatchView, EngineItem, ItemResult
from ._openai_wire import OpenAIWire
from ._wire import ParsedCall, WireError, dumps

__all__ = [
    "ANTHROPIC_MAX_REQUESTS",
    "BATCH_PREFIXES",
    "MAX_FILES",
    "MAX_STORED_FILE_BYTES",
    "OPENAI_MAX_FILE_BYTES",
    "OPENAI_MAX_REQUESTS",
    "BatchRoutes",
    "Reply",
]

#: Paths (prefixes) served here.
BATCH_PREFIXES = ("/v1/messages/batches", "/v1/files", "/v1/batches")
ANTHROPIC_MAX_REQUESTS = 100_000
OPENAI_MAX_REQUESTS = 50_000
#: OpenAI's limit on one uploaded batch input file.
OPENAI_MAX_FILE_BYTES = 200 * 1024 * 1024
#: Uploaded files kept (oldest dropped first past either bound).
MAX_FILES = 1000
MAX_STORED_FILE_BYTES = 1 << 30
_ANTHROPIC = AnthropicWire()
_OPENAI = OpenAIWire()
_ENDPOINT = "/v1/chat/completions"
#: Stands in for the request of an answered item when rendering (only the model counts).
_NO_REQUEST = Request(messages=[], max_tokens=1)
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_FIELD_NAME = re.compile(rb'(?<![A-Za-z])name="([^"]*)"', re.IGNORECASE)
_FILE_NAME = re.compile(rb'filename="([^"]*)"', re.IGNORECASE)
#: Lines of a results file rendered per piece of the body.
_LINES_PER_PIECE = 256


@dataclass(slots=True)
class Reply:
    """One answer: status, body (whole, or pieces to send chunked) and its type."""

    status: int
    body: bytes | Iterator[bytes]
    content_type: str = "application/json"


@dataclass(slots=True)
class _File:
    id: str
    data: bytes
    purpose: str
    filename: str
    created_at: int


@dataclass(slots=True)
class _OpenAIBatch:
    input_file_id: str
    completion_window: str
    #: A batch refused as a whole: the ``errors`` list (and no engine batch).
    failed: list[dict[str, Any]] | None = None
    failed_object: dict[str, Any] | None = None


def _rfc3339(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    whole = int(seconds)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    return f"{stamp}.{int((seconds - whole) * 1e6):06d}Z"


def _json(payload: Any) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        raise WireError(400, "invalid_request", "request body is not valid JSON") from None


def _engine_error(exc: BatchError) -> WireError:
    return WireError(
        exc.status, "not_found" if exc.status == 404 else "invalid_request", exc.message
    )


class BatchRoutes:
    """The batch endpoints of one mock server."""

    def __init__(self, engine: BatchEngine) -> None:
        self.engine = engine
        self._openai: dict[str, _OpenAIBatch] = {}
        self._files: OrderedDict[str, _File] = OrderedDict()
        self._file_bytes = 0
        self._files_made = 0
        #: Batch creations answered (failed OpenAI ones too).
        self.created = 0

    def handle(
        self, method: str, path: str, query: str, body: bytes, headers: Mapping[str, str], base: str
    ) -> Reply:
        """Answer one request; :class:`WireError` for the API's error answers."""
        parts = path.strip("/").split("/")
        if path.startswith("/v1/messages/batches"):
            return self._anthropic(method, parts[3:], query, body, base)
        if path.startswith("/v1/files"):
            return self._files_route(method, parts[2:], body, headers)
        return self._batches_route(method, parts[2:], query, body)

    # -- Anthropic -------------------------------------------------------------------

    def _anthropic(self, method: str, rest: list[str], query: str, body: bytes, base: str) -> Reply:
        if not rest:
            if method == "POST":
                return self._anthropic_create(body, base)
            if method == "GET":
                return self._anthropic_list(query, base)
        elif len(rest) == 1:
            if method == "GET":
                return Reply(
                    200, dumps(self._message_batch(self._view(rest[0], "msgbatch_"), base))
                )
            if method == "DELETE":
                self._view(rest[0], "msgbatch_")
                try:
                    self.engine.delete(rest[0])
                except BatchError as exc:
                    raise _engine_error(exc) from None
                return Reply(200, dumps({"id": rest[0], "type": "message_batch_deleted"}))
        elif len(rest) == 2 and rest[1] == "cancel" and method == "POST":
            self._view(rest[0], "msgbatch_")
            view = self._call(lambda: self.engine.cancel(rest[0]))
            return Reply(200, dumps(self._message_batch(view, base)))
        elif len(rest) == 2 and rest[1] == "results" and method == "GET":
            self._view(rest[0], "msgbatch_")
            results = self._call(lambda: self.engine.results(rest[0]))
            return Reply(200, _pieces(_anthropic_line(r) for r in results), "application/binary")
        raise WireError(404, "not_found", f"{method} {'/'.join(rest)} not found")

    def _anthropic_create(self, body: bytes, base: str) -> Reply:
        payload = _json(body)
        requests = payload.get("requests") if isinstance(payload, dict) else None
        if not isinstance(requests, list):
            raise WireError(400, "invalid_request", "requests: Field required")
        items: list[EngineItem] = []
        for i, entry in enumerate(requests):
            if not isinstance(entry, dict):
                raise WireError(400, "invalid_request", f"requests.{i}: Input should be an object")
            custom_id = entry.get("custom_id")
            params = entry.get("params")
            if not isinstance(custom_id, str):
                raise WireError(400, "invalid_request", f"requests.{i}.custom_id: Field required")
            if not isinstance(params, dict):
                raise WireError(400, "invalid_request", f"requests.{i}.params: Field required")
            model = params.get("model")
            try:
                call = _ANTHROPIC.parse(params)
            except WireError as exc:
                items.append(EngineItem(custom_id, str(model or ""), None, exc))
                continue
            items.append(EngineItem(custom_id, call.model, call.request))
        batch = self._call(
            lambda: self.engine.create(
                items, prefix="msgbatch_", max_requests=ANTHROPIC_MAX_REQUESTS
            )
        )
        self.created += 1
        return Reply(200, dumps(self._message_batch(self.engine.created_view(batch), base)))

    def _anthropic_list(self, query: str, base: str) -> Reply:
        args = {k: v[-1] for k, v in parse_qs(query).items()}
        try:
            limit = int(args.get("limit", "20"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 1000:
            raise WireError(400, "invalid_request", "limit: Input should be between 1 and 1000")
        ids = [b.id for b in self.engine.batches() if b.id.startswith("msgbatch_")]
        after, before = args.get("after_id"), args.get("before_id")
        if before is not None:
            end = ids.index(before) if before in ids else 0
            page = ids[max(0, end - limit) : end]
            more = end - limit > 0
        else:
            start = ids.index(after) + 1 if after is not None and after in ids else 0
            if after is not None and after not in ids:
                start = len(ids)
            page = ids[start : start + limit]
            more = start + limit < len(ids)
        data = [self._message_batch(self.engine.view(self.engine.get(i)), base) for i in page]
        return Reply(
            200,
            dumps(
                {
                    "data": data,
                    "has_more": more,
                    "first_id": page[0] if page else None,
                    "last_id": page[-1] if page else None,
                }
            ),
        )

    def _message_batch(self, view: BatchView, base: str) -> dict[str, Any]:
        ended = view.processing == "ended"
        return {
            "id": view.id,
            "type": "message_batch",
            "processing_status": view.processing,
            # As the API documents: the other counts stay 0 until the whole batch ends.
            "request_counts": {
                "processing": view.processing_count if ended else view.total,
                "succeeded": view.succeeded if ended else 0,
                "errored": view.errored if ended else 0,
                "canceled": view.canceled,
                "expired": view.expired,
            },
            "ended_at": _rfc3339(view.ended_at),
            "created_at": _rfc3339(view.created_at),
            "expires_at": _rfc3339(view.expires_at),
            "archived_at": None,
            "cancel_initiated_at": _rfc3339(view.cancel_initiated_at),
            "results_url": f"{base}/v1/messages/batches/{view.id}/results" if ended else None,
        }

    # -- OpenAI files ----------------------------------------------------------------

    def _files_route(
        self, method: str, rest: list[str], body: bytes, headers: Mapping[str, str]
    ) -> Reply:
        if not rest and method == "POST":
            return Reply(200, dumps(self._file_object(self._upload(body, headers))))
        if len(rest) == 1 and method == "GET":
            return Reply(200, dumps(self._file_object(self._file(rest[0]))))
        if len(rest) == 2 and rest[1] == "content" and method == "GET":
            return self._content(rest[0])
        raise WireError(404, "not_found", f"{method} /v1/files/{'/'.join(rest)} not found")

    def _upload(self, body: bytes, headers: Mapping[str, str]) -> _File:
        fields = _multipart(body, headers.get("content-type", ""))
        purpose = fields.get("purpose")
        if purpose is None or purpose[0] != b"batch":
            shown = None if purpose is None else purpose[0][:40].decode("utf-8", "replace")
            raise WireError(
                400,
                "invalid_request",
                f"Invalid value for 'purpose': {shown!r}; this server accepts 'batch'",
                "purpose",
            )
        file = fields.get("file")
        if file is None:
            raise WireError(400, "invalid_request", "'file' is a required property", "file")
        data, filename = file
        if len(data) > OPENAI_MAX_FILE_BYTES:
            raise WireError(
                400,
                "invalid_request",
                f"File is too large: {len(data)} bytes > {OPENAI_MAX_FILE_BYTES} for purpose "
                "'batch'",
                "file",
            )
        self._files_made += 1
        token = fingerprint(b"file" + self._files_made.to_bytes(8, "big") + data[:64])[:12].hex()
        stored = _File(f"file-{token}", data, "batch", filename or "upload.jsonl", int(time.time()))
        self._files[stored.id] = stored
        self._file_bytes += len(data)
        while self._files and (
            len(self._files) > MAX_FILES or self._file_bytes > MAX_STORED_FILE_BYTES
        ):
            _, old = self._files.popitem(last=False)
            self._file_bytes -= len(old.data)
        return stored

    def _file(self, file_id: str) -> _File:
        found = self._files.get(file_id)
        if found is not None:
            return found
        batch_id, kind = _generated(file_id)
        if batch_id is not None:
            self._view(batch_id, "batch_")
            return _File(file_id, b"", "batch_output", f"batch_{kind}.jsonl", int(time.time()))
        raise WireError(404, "not_found", f"No such File object: {file_id}", "id")

    def _file_object(self, file: _File) -> dict[str, Any]:
        return {
            "id": file.id,
            "object": "file",
            "bytes": len(file.data),
            "created_at": file.created_at,
            "filename": file.filename,
            "purpose": file.purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }

    def _content(self, file_id: str) -> Reply:
        stored = self._files.get(file_id)
        if stored is not None:
            return Reply(200, stored.data, "application/octet-stream")
        batch_id, kind = _generated(file_id)
        if batch_id is None:
            raise WireError(404, "not_found", f"No such File object: {file_id}", "id")
        self._view(batch_id, "batch_")
        results = self._call(lambda: self.engine.results(batch_id))
        if kind == "output":
            lines = (_openai_line(r) for r in results if r.state == "succeeded")
        else:
            lines = (_openai_line(r) for r in results if r.state != "succeeded")
        return Reply(200, _pieces(lines), "application/octet-stream")

    # -- OpenAI batches --------------------------------------------------------------

    def _batches_route(self, method: str, rest: list[str], query: str, body: bytes) -> Reply:
        if not rest:
            if method == "POST":
                return self._openai_create(body)
            if method == "GET":
                return self._openai_list(query)
        elif len(rest) == 1 and method == "GET":
            return Reply(200, dumps(self._openai_object(rest[0])))
        elif len(rest) == 2 and rest[1] == "cancel" and method == "POST":
            info = self._openai.get(rest[0])
            if info is not None and info.failed is not None:
                raise WireError(
                    400, "invalid_request", "Cannot cancel a batch with status 'failed'."
                )
            self._view(rest[0], "batch_")
            self._call(lambda: self.engine.cancel(rest[0]))
            return Reply(200, dumps(self._openai_object(rest[0], canceling=True)))
        raise WireError(404, "not_found", f"{method} /v1/batches/{'/'.join(rest)} not found")

    def _openai_create(self, body: bytes) -> Reply:
        payload = _json(body)
        if not isinstance(payload, dict):
            raise WireError(400, "invalid_request", "request body must be a JSON object")
        file_id = payload.get("input_file_id")
        endpoint = payload.get("endpoint")
        window = payload.get("completion_window")
        metadata = payload.get("metadata") or {}
        if endpoint != _ENDPOINT:
            raise WireError(
                400,
                "invalid_request",
                f"Invalid value for 'endpoint': {endpoint!r}; this server supports {_ENDPOINT!r}",
                "endpoint",
            )
        if window != "24h":
            raise WireError(
                400,
                "invalid_request",
                f"Invalid value for 'completion_window': {window!r}; supported: '24h'",
                "completion_window",
            )
        if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
        ):
            raise WireError(400, "invalid_request", "metadata must map strings to strings")
        stored = self._files.get(file_id) if isinstance(file_id, str) else None
        if stored is None:
            raise WireError(
                400, "invalid_request", f"No such File object: {file_id}", "input_file_id"
            )
        if stored.purpose != "batch":
            raise WireError(
                400,
                "invalid_request",
                f"File {file_id} has purpose {stored.purpose!r}, not 'batch'",
                "input_file_id",
            )
        items, errors = _openai_items(stored.data)
        self.created += 1
        if errors:
            return Reply(200, dumps(self._failed(stored.id, window, metadata, errors)))
        batch = self._call(
            lambda: self.engine.create(
                items, prefix="batch_", metadata=metadata, max_requests=OPENAI_MAX_REQUESTS
            )
        )
        self._openai[batch.id] = _OpenAIBatch(stored.id, window)
        self._prune()
        view = self.engine.created_view(batch)
        return Reply(200, dumps(self._render_openai(view, self._openai[batch.id], "validating")))

    def _failed(
        self, file_id: str, window: str, metadata: dict[str, str], errors: list[dict[str, Any]]
    ) -> dict[str, Any]:
        self._files_made += 1
        token = fingerprint(b"failed" + self._files_made.to_bytes(8, "big"))[:12].hex()
        now = int(self.engine.unix(self.engine.now()))
        batch_id = f"batch_{token}"
        obj: dict[str, Any] = {
            "id": batch_id,
            "object": "batch",
            "endpoint": _ENDPOINT,
            "errors": {"object": "list", "data": errors},
            "input_file_id": file_id,
            "completion_window": window,
            "status": "failed",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": now,
            "in_progress_at": None,
            "expires_at": now + 86400,
            "finalizing_at": None,
            "completed_at": None,
            "failed_at": now,
            "expired_at": None,
            "cancelling_at": None,
            "cancelled_at": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "metadata": metadata or None,
        }
        self._openai[batch_id] = _OpenAIBatch(file_id, window, errors, obj)
        self._prune()
        return obj

    def _prune(self) -> None:
        """Forget what belongs to batches the engine has dropped (failed ones: the oldest)."""
        known = {b.id for b in self.engine.batches()}
        failed = [k for k, v in self._openai.items() if v.failed is not None]
        drop = [k for k, v in self._openai.items() if v.failed is None and k not in known]
        drop += failed[: max(0, len(failed) - MAX_FILES)]
        for key in drop:
            del self._openai[key]

    def _openai_object(self, batch_id: str, *, canceling: bool = False) -> dict[str, Any]:
        info = self._openai.get(batch_id)
        if info is not None and info.failed_object is not None:
            return info.failed_object
        view = self._view(batch_id, "batch_")
        if info is None:
            raise WireError(404, "not_found", f"No batch found with id '{batch_id}'.")
        return self._render_openai(view, info, "cancelling" if canceling else None)

    def _openai_list(self, query: str) -> Reply:
        args = {k: v[-1] for k, v in parse_qs(query).items()}
        try:
            limit = int(args.get("limit", "20"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            raise WireError(400, "invalid_request", "limit must be between 1 and 100", "limit")
        ids = [b.id for b in self.engine.batches() if b.id in self._openai]
        after = args.get("after")
        start = ids.index(after) + 1 if after in ids else 0
        page = ids[start : start + limit]
        data = [self._openai_object(i) for i in page]
        return Reply(
            200,
            dumps(
                {
                    "object": "list",
                    "data": data,
                    "first_id": page[0] if page else None,
                    "last_id": page[-1] if page else None,
                    "has_more": start + limit < len(ids),
                }
            ),
        )

    def _render_openai(
        self, view: BatchView, info: _OpenAIBatch, status: str | None
    ) -> dict[str, Any]:
        ended_at = None if view.ended_at is None else int(view.ended_at)
        if status is None:
            status = {
                "in_progress": "in_progress",
                "canceling": "cancelling",
                "ended": {"completed": "completed", "canceled": "cancelled", "expired": "expired"}[
                    view.ending or "completed"
                ],
            }[view.processing]
        created = int(view.created_at)
        token = view.id.removeprefix("batch_")
        ended = view.processing == "ended"
        left = view.errored + view.canceled + view.expired
        cancel_at = view.cancel_initiated_at
        return {
            "id": view.id,
            "object": "batch",
            "endpoint": _ENDPOINT,
            "errors": None,
            "input_file_id": info.input_file_id,
            "completion_window": info.completion_window,
            "status": status,
            "output_file_id": f"file-out{token}" if ended and view.succeeded else None,
            "error_file_id": f"file-err{token}" if ended and left else None,
            "created_at": created,
            "in_progress_at": None if status == "validating" else created,
            "expires_at": int(view.expires_at),
            "finalizing_at": ended_at if status == "completed" else None,
            "completed_at": ended_at if status == "completed" else None,
            "failed_at": None,
            "expired_at": ended_at if status == "expired" else None,
            "cancelling_at": None if cancel_at is None else int(cancel_at),
            "cancelled_at": ended_at if status == "cancelled" else None,
            "request_counts": {
                "total": view.total,
                "completed": view.succeeded,
                "failed": view.errored,
            },
            "metadata": dict(view.metadata) or None,
        }

    # -- shared ----------------------------------------------------------------------

    def _view(self, batch_id: str, prefix: str) -> BatchView:
        """The batch's view; a 404 for an unknown id or another API's batch."""
        if batch_id.startswith(prefix):
            try:
                return self.engine.view(self.engine.get(batch_id))
            except BatchError:
                pass
        if prefix == "batch_":
            raise WireError(404, "not_found", f"No batch found with id '{batch_id}'.")
        raise WireError(404, "not_found", f"Message batch {batch_id} not found")

    @staticmethod
    def _call(fn: Any) -> Any:
        try:
            return fn()
        except BatchError as exc:
            raise _engine_error(exc) from None


def _generated(file_id: str) -> tuple[str | None, str]:
    """The batch an output or error file id belongs to, and which of the two it is."""
    for kind in ("out", "err"):
        if file_id.startswith(f"file-{kind}"):
            return f"batch_{file_id[len(kind) + 5 :]}", "output" if kind == "out" else "error"
    return None, ""


def _pieces(lines: Iterator[bytes]) -> Iterator[bytes]:
    """JSONL lines joined a few hundred at a time: a large file is never held whole."""
    piece: list[bytes] = []
    for line in lines:
        piece.append(line)
        if len(piece) >= _LINES_PER_PIECE:
            yield b"".join(piece)
            piece = []
    if piece:
        yield b"".join(piece)


def _anthropic_line(result: ItemResult) -> bytes:
    outcome, error = result.outcome, result.error
    body: dict[str, Any]
    if result.state == "succeeded" and outcome is not None:
        call = ParsedCall(_NO_REQUEST, result.model, False)
        message = json.loads(_ANTHROPIC.body(call, outcome, outcome.token))
        body = {"type": "succeeded", "message": message}
    elif result.state == "errored" and error is not None:
        body = {
            "type": "errored",
            "error": json.loads(_ANTHROPIC.error_body(error, "req_sim_batch")),
        }
    else:
        body = {"type": result.state}
    return dumps({"custom_id": result.custom_id, "result": body}) + b"\n"


def _openai_line(result: ItemResult) -> bytes:
    outcome, error = result.outcome, result.error
    ident = fingerprint(result.custom_id.encode() + b"batch_req")[:12].hex()
    response: dict[str, Any] | None = None
    line_error: dict[str, str] | None = None
    if result.state == "succeeded" and outcome is not None:
        call = ParsedCall(_NO_REQUEST, result.model, False)
        response = {
            "status_code": 200,
            "request_id": f"req_sim_{outcome.token}",
            "body": json.loads(_OPENAI.body(call, outcome, outcome.token)),
        }
    elif result.state == "errored" and error is not None:
        status = _OPENAI.overloaded_status() if error.status == 529 else error.status
        response = {
            "status_code": status,
            "request_id": f"req_sim_{ident}",
            "body": json.loads(_OPENAI.error_body(error, f"req_sim_{ident}")),
        }
    else:
        code = "batch_expired" if result.state == "expired" else "batch_cancelled"
        words = "expired" if result.state == "expired" else "was cancelled"
        line_error = {
            "code": code,
            "message": f"This request could not be executed: the batch {words} before it ran.",
        }
    return (
        dumps(
            {
                "id": f"batch_req_{ident}",
                "custom_id": result.custom_id,
                "response": response,
                "error": line_error,
            }
        )
        + b"\n"
    )


def _openai_items(data: bytes) -> tuple[list[EngineItem], list[dict[str, Any]]]:
    """The items of an input file, or the errors that fail the batch."""
    items: list[EngineItem] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    model: str | None = None

    def fail(line: int, code: str, message: str, param: str | None = None) -> None:
        if len(errors) < 100:
            errors.append({"code": code, "message": message, "param": param, "line": line})

    lines = data.splitlines()
    if len(lines) > OPENAI_MAX_REQUESTS:
        fail(1, "too_many_requests", f"A batch holds at most {OPENAI_MAX_REQUESTS} requests.")
        return [], errors
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            entry = json.loads(raw)
        except ValueError:
            fail(number, "invalid_json_line", "This line is not parseable as valid JSON.")
            continue
        if not isinstance(entry, dict):
            fail(number, "invalid_json_line", "Each line must be a JSON object.")
            continue
        custom_id = entry.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            fail(number, "missing_required_parameter", "Missing 'custom_id'.", "custom_id")
            continue
        if custom_id in seen:
            fail(
                number,
                "duplicate_custom_id",
                f"The custom_id {custom_id!r} is used more than once.",
                "custom_id",
            )
            continue
        seen.add(custom_id)
        if entry.get("method") != "POST":
            fail(number, "invalid_method", "The method must be 'POST'.", "method")
            continue
        if entry.get("url") != _ENDPOINT:
            fail(
                number,
                "mismatched_url",
                f"The url must match the batch's endpoint {_ENDPOINT!r}.",
                "url",
            )
            continue
        body = entry.get("body")
        line_model = body.get("model") if isinstance(body, dict) else None
        if isinstance(line_model, str):
            if model is None:
                model = line_model
            elif line_model != model:
                fail(
                    number,
                    "mismatched_model",
                    "All requests of a batch must use the same model.",
                    "body.model",
                )
                continue
        try:
            call = _OPENAI.parse(body)
        except WireError as exc:
            items.append(EngineItem(custom_id, str(line_model or ""), None, exc))
            continue
        items.append(EngineItem(custom_id, call.model, call.request))
    if not items and not errors:
        fail(1, "empty_file", "The input file has no requests.")
    return items, errors


def _multipart(body: bytes, content_type: str) -> dict[str, tuple[bytes, str]]:
    """``multipart/form-data`` fields by name: (content, filename)."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise WireError(400, "invalid_request", "Expected a multipart/form-data body")
    match = _BOUNDARY.search(content_type)
    if match is None:
        raise WireError(400, "invalid_request", "multipart body without a boundary")
    delimiter = b"--" + match.group(1).encode("latin-1")
    fields: dict[str, tuple[bytes, str]] = {}
    for part in body.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break
        head, sep, content = part.partition(b"\r\n\r\n")
        if not sep:
            raise WireError(400, "invalid_request", "malformed multipart part")
        name = _FIELD_NAME.search(head)
        if name is None:
            continue
        filename = _FILE_NAME.search(head)
        fields[name.group(1).decode("utf-8", "replace")] = (
            content.removesuffix(b"\r\n"),
            "" if filename is None else filename.group(1).decode("utf-8", "replace"),
        )
    return fields
