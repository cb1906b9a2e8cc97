"""What a batch job is and how its work is cut into provider batches.

A job is identified by what decides its answers: the Synth's models (in
preference order) and each request's cache-key digest, in input order. The same
inputs with the same parameters give the same job id, so a rerun finds the
job's state (submitted batches, collected results) instead of paying again.

Each item of a provider batch carries a ``custom_id`` that names its input's
index (``i<index>``); results come back keyed by it, in any order.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from ..providers._batch import BatchItem, BatchLimits

__all__ = ["Chunking", "custom_id", "index_of", "job_id", "split"]

_CUSTOM_ID = re.compile(r"i(0|[1-9][0-9]{0,18})")
_JOB_VERSION = b"synth-batch-job/1\x1f"


def custom_id(index: int) -> str:
    """The ``custom_id`` of input ``index``: ``i`` and the index in decimal."""
    if index < 0:
        raise ValueError(f"an input index is >= 0, got {index}")
    return f"i{index}"


def index_of(value: str) -> int | None:
    """The input index a ``custom_id`` names, or ``None`` if it is not one of ours."""
    match = _CUSTOM_ID.fullmatch(value)
    return None if match is None else int(match.group(1))


def job_id(models: Sequence[str], digests: Iterable[bytes]) -> str:
    """A stable id from the models and the requests' digests
    (:func:`~agentic_synth.caching._key.request_digest`), in input order."""
    h = hashlib.blake2b(digest_size=12)
    h.update(_JOB_VERSION)
    h.update("\x1e".join(models).encode("utf-8", "surrogatepass"))
    h.update(b"\x1f")
    count = 0
    for digest in digests:
        h.update(digest)
        count += 1
    h.update(count.to_bytes(8, "big"))
    return "job-" + h.hexdigest()


@dataclass(slots=True)
class Chunking:
    """Items cut into batches that fit the backend's limits, and those too large to fit
    even alone (each fails instead of failing a whole batch)."""

    batches: list[list[BatchItem]] = field(default_factory=list)
    oversized: list[tuple[BatchItem, int]] = field(default_factory=list)


def split(
    items: Iterable[BatchItem], limits: BatchLimits, size: Callable[[BatchItem], int]
) -> Chunking:
    """Greedy, in order: a batch is closed when the next item would pass
    ``limits.max_requests`` or ``limits.max_bytes`` (measured with ``size``)."""
    if limits.max_requests < 1 or limits.max_bytes < 1:
        raise ValueError(f"batch limits must be >= 1, got {limits}")
    out = Chunking()
    current: list[BatchItem] = []
    used = 0
    for item in items:
        bytes_ = size(item)
        if bytes_ > limits.max_bytes:
            out.oversized.append((item, bytes_))
            continue
        if current and (len(current) >= limits.max_requests or used + bytes_ > limits.max_bytes):
            out.batches.append(current)
            current, used = [], 0
        current.append(item)
        used += bytes_
    if current:
        out.batches.append(current)
    return out
