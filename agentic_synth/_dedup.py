"""Near-duplicate control on the request path: prompts before sending, outputs after.

Prompt dedup: an input too close to an earlier input of the batch is not sent;
it gets the earlier one's result, marked ``duplicate_of`` (with zero usage: it
cost nothing). Output dedup: a completion too close to an earlier one is flagged
(``near_duplicate_of``) or dropped (a :class:`DuplicateOutputError` record), and
counted. Both use the compiled similarity index, one per batch unless the caller
passes an index of their own to share across batches.

Memory: prompt dedup keeps the result of every distinct prompt of the batch until
the batch ends (a later duplicate may need it), on top of the index itself.
"""

from __future__ import annotations

from typing import Literal, Protocol

import anyio

from ._exceptions import InvalidRequestError, SynthError
from ._types import Completion, Failure, Result, Usage
from .monitor import Metrics

__all__ = [
    "DedupAction",
    "DuplicateOutputError",
    "DuplicatePromptError",
    "NearDuplicateIndex",
    "OutputDedup",
    "PromptDedup",
    "make_index",
]

DedupAction = Literal["flag", "drop"]

# Duplicates of texts that no input of this batch owns (a shared index) are encoded
# as _EARLIER_BATCH - position: always negative, never a batch index.
_EARLIER_BATCH = -1


class NearDuplicateIndex(Protocol):
    """The streaming dedup primitive (``agentic_synth.similarity`` provides it)."""

    def insert_if_new(self, text: str) -> int | None: ...

    @property
    def next_position(self) -> int: ...


class DuplicatePromptError(SynthError):
    """The input repeats one seen in an earlier batch of a shared index: not sent."""

    def __init__(self, message: str, *, position: int) -> None:
        super().__init__(message)
        self.position = position


class DuplicateOutputError(SynthError):
    """A generated sample was too close to an earlier one and was dropped."""

    def __init__(self, message: str, *, duplicate_of: int) -> None:
        super().__init__(message)
        self.duplicate_of = duplicate_of


def make_index(setting: float | NearDuplicateIndex, what: str) -> NearDuplicateIndex:
    """A threshold builds a fresh MinHash index; an index object is used as is."""
    if isinstance(setting, bool) or not isinstance(setting, int | float):
        if hasattr(setting, "insert_if_new") and hasattr(setting, "next_position"):
            return setting
        raise InvalidRequestError(
            f"{what} takes a Jaccard threshold in (0, 1] such as 0.8, or a similarity index"
        )
    if not 0.0 < setting <= 1.0:
        raise InvalidRequestError(f"{what} must be a Jaccard threshold in (0, 1], got {setting!r}")
    from ._core import SimilarityIndex

    index: NearDuplicateIndex = SimilarityIndex("minhash", float(setting))
    return index


class PromptDedup:
    """Claims each input; near-duplicates wait for and reuse the first one's result."""

    def __init__(self, index: NearDuplicateIndex, metrics: Metrics) -> None:
        self._index = index
        self._metrics = metrics
        self._owner: dict[int, int] = {}  # index position -> batch index of the sent input
        self._done: dict[int, anyio.Event] = {}
        self._results: dict[int, Result] = {}

    def claim(self, index: int, text: str) -> int | None:
        """None: send this input (call :meth:`publish` when done). Otherwise the
        batch index of the earlier input whose result this one reuses."""
        position = self._index.next_position
        earlier = self._index.insert_if_new(text)
        if earlier is None:
            self._owner[position] = index
            self._done[index] = anyio.Event()
            return None
        self._metrics.dedup_prompts_skipped += 1
        return self._owner.get(earlier, _EARLIER_BATCH - earlier)

    def publish(self, index: int, result: Result) -> None:
        self._results[index] = result
        self._done[index].set()

    async def result_of(self, original: int, index: int) -> Result:
        """This input's result: the original's, marked as a reuse."""
        if original <= _EARLIER_BATCH:
            position = _EARLIER_BATCH - original
            return Failure(
                DuplicatePromptError(
                    f"near-duplicate of the text at position {position} of the shared index, "
                    "from an earlier batch; not sent (pass dedup_prompts=None to send it)",
                    position=position,
                ),
                index=index,
            )
        await self._done[original].wait()
        result = self._results[original]
        if isinstance(result, Failure):
            return Failure(result.error, index=index, model=result.model, attempts=0)
        return Completion(
            text=result.text,
            model=result.model,
            usage=Usage(0, 0),
            latency=result.latency,
            finish_reason=result.finish_reason,
            attempts=0,
            request_id=result.request_id,
            index=index,
            duplicate_of=original,
        )


class OutputDedup:
    """Flags or drops completions too close to an earlier output."""

    def __init__(self, index: NearDuplicateIndex, metrics: Metrics, action: DedupAction) -> None:
        if action not in ("flag", "drop"):
            raise InvalidRequestError(f"dedup_action must be 'flag' or 'drop', got {action!r}")
        self._index = index
        self._metrics = metrics
        self._drop = action == "drop"
        self._owner: dict[int, int] = {}

    def check(self, index: int, completion: Completion) -> Result:
        position = self._index.next_position
        earlier = self._index.insert_if_new(completion.text)
        if earlier is None:
            self._owner[position] = index
            return completion
        original = self._owner.get(earlier, earlier)
        if self._drop:
            self._metrics.dedup_outputs_dropped += 1
            return Failure(
                DuplicateOutputError(
                    f"output is a near-duplicate of input {original}'s output; dropped "
                    "(dedup_action='flag' keeps it, marked)",
                    duplicate_of=original,
                ),
                index=index,
                model=completion.model,
                attempts=completion.attempts,
            )
        self._metrics.dedup_outputs_flagged += 1
        completion.near_duplicate_of = original
        return completion
