"""Near-duplicate control on the request path: prompts before sending, outputs after.

Prompt dedup: an input too close to an earlier input of the batch is not sent;
it gets the earlier one's result, marked ``duplicate_of`` (with zero usage: it
cost nothing). Output dedup: a completion too close to an earlier one is flagged
(``near_duplicate_of``) or dropped (a :class:`DuplicateOutputError` record), and
counted. Both use the compiled similarity index, one per batch unless the caller
passes an index of their own to share across batches.

Memory: the index holds every distinct text (that is its job). Beside it, prompt
dedup keeps the originals still in flight and the last ``retain`` finished
originals' results; output dedup keeps 8 bytes per output (which input took
which index position, for ``near_duplicate_of``), beside the index's own ~275.
A duplicate of an original whose result is no longer kept is sent after all
(``dedup_prompts_resent``): a near-duplicate prompt costs one call rather than
unbounded memory. A failed (or cancelled) original gives its claim
back, so a shared index never blocks a prompt that never got an answer, and the
near-duplicates waiting for it are sent themselves.
"""

from __future__ import annotations

from array import array
from collections import OrderedDict
from typing import Literal, Protocol, cast

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


class NearDuplicateIndex(Protocol):
    """The streaming dedup primitive (``agentic_synth.similarity`` provides it)."""

    def insert_if_new(self, text: str) -> int | None: ...

    def remove(self, position: int) -> bool: ...

    @property
    def next_position(self) -> int: ...


def _claim(index: NearDuplicateIndex, text: str) -> tuple[int, int | None]:
    """``(position taken, earlier near-duplicate or None)``, atomically when the index
    can (the compiled one can: another thread sharing it never sees our position)."""
    claim = getattr(index, "claim", None)
    if claim is not None:
        position, earlier = claim(text)
        return int(position), earlier
    position = index.next_position
    return position, index.insert_if_new(text)


class _Owners:
    """Index position -> batch index of the input that took it: 8 bytes a position."""

    __slots__ = ("_base", "_owners")

    def __init__(self, base: int) -> None:
        self._base = base
        self._owners = array("q")

    def set(self, position: int, index: int) -> None:
        offset = position - self._base
        owners = self._owners
        if offset >= len(owners):
            owners.extend([-1] * (offset + 1 - len(owners)))
        owners[offset] = index

    def get(self, position: int) -> int | None:
        """The batch index, or None for a position this batch did not take."""
        offset = position - self._base
        if 0 <= offset < len(self._owners):
            owner = self._owners[offset]
            return None if owner < 0 else owner
        return None


class _Pending:
    """An original in flight: duplicates wait for its result."""

    __slots__ = ("done", "index", "result")

    def __init__(self, index: int) -> None:
        self.index = index
        self.done = anyio.Event()
        self.result: Result | None = None


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
        if all(hasattr(setting, a) for a in ("insert_if_new", "remove", "next_position")):
            return cast(NearDuplicateIndex, setting)
        raise InvalidRequestError(
            f"{what} takes a Jaccard threshold in (0, 1] such as 0.8, or a similarity index"
        )
    if not 0.0 < setting <= 1.0:
        raise InvalidRequestError(f"{what} must be a Jaccard threshold in (0, 1], got {setting!r}")
    from ._core import SimilarityIndex

    index: NearDuplicateIndex = SimilarityIndex("minhash", float(setting))
    return index


class PromptDedup:
    """Claims each input; near-duplicates reuse the first one's result."""

    def __init__(self, index: NearDuplicateIndex, metrics: Metrics, *, retain: int) -> None:
        self._index = index
        self._metrics = metrics
        self._base = index.next_position
        self._pending: dict[int, _Pending] = {}  # position -> original in flight
        # position -> (batch index, result) of the last ``retain`` finished originals
        self._recent: OrderedDict[int, tuple[int, Completion]] = OrderedDict()
        self._retain = retain

    def claim(self, index: int, text: str) -> tuple[int, int | None]:
        """``(position, None)``: send this input, then :meth:`publish` (or
        :meth:`abandon`) it. ``(position, earlier)``: a near-duplicate of the text at
        index position ``earlier``; get its result with :meth:`result_of`."""
        position, earlier = _claim(self._index, text)
        if earlier is None:
            self._pending[position] = _Pending(index)
        return position, earlier

    def publish(self, position: int, result: Result) -> None:
        """The original at ``position`` has its result."""
        pending = self._pending.pop(position)
        pending.result = result
        pending.done.set()
        if isinstance(result, Completion):
            self._recent[position] = (pending.index, result)
            if len(self._recent) > self._retain:
                self._recent.popitem(last=False)
        else:
            self._index.remove(position)  # no answer: a later run may send it again

    def abandon(self, position: int) -> None:
        """The original was cancelled before its result: give its claim back (and let
        any duplicate waiting for it go and be sent itself)."""
        pending = self._pending.pop(position, None)
        if pending is not None:
            self._index.remove(position)
            pending.done.set()

    async def result_of(self, earlier: int, index: int) -> Result | None:
        """This duplicate's result: the original's, marked as a reuse; ``None`` when
        that result is no longer kept (send this input after all)."""
        pending = self._pending.get(earlier)
        if pending is not None:
            await pending.done.wait()
            if not isinstance(pending.result, Completion):
                # the original failed or was cancelled: this input gets its own try
                # (one transient failure must not fail every near-duplicate with it)
                return None
            original, result = pending.index, pending.result
        else:
            kept = self._recent.get(earlier)
            if kept is None:
                if earlier < self._base:
                    return Failure(
                        DuplicatePromptError(
                            f"near-duplicate of the text at position {earlier} of the shared "
                            "index, from an earlier batch; not sent (pass dedup_prompts=None "
                            "to send it)",
                            position=earlier,
                        ),
                        index=index,
                    )
                self._metrics.dedup_prompts_resent += 1  # its result is no longer kept
                return None
            self._recent.move_to_end(earlier)
            original, result = kept
        self._metrics.dedup_prompts_skipped += 1
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
            raw_finish_reason=result.raw_finish_reason,
        )


class OutputDedup:
    """Flags or drops completions too close to an earlier output."""

    def __init__(self, index: NearDuplicateIndex, metrics: Metrics, action: DedupAction) -> None:
        if action not in ("flag", "drop"):
            raise InvalidRequestError(f"dedup_action must be 'flag' or 'drop', got {action!r}")
        self._index = index
        self._metrics = metrics
        self._drop = action == "drop"
        self._owners = _Owners(index.next_position)

    def check(self, index: int, completion: Completion) -> Result:
        position, earlier = _claim(self._index, completion.text)
        if earlier is None:
            self._owners.set(position, index)
            return completion
        owner = self._owners.get(earlier)
        original = earlier if owner is None else owner
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
