"""The dataset calls of a :class:`~agentic_synth.Synth`, kept out of the facade.

``Synth.generate_structured`` and friends are thin: they hand the engine (a
function that sends one request, cached under a sample number) to the jobs here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import anyio
import anyio.abc

from .._exceptions import SynthError
from .._request import GenerationParams
from .._types import Completion, Request, Result

if TYPE_CHECKING:
    from ._dataset import Dataset, DatasetStats
    from ._structured import SlotResult, StructuredJob

__all__ = ["Engine", "StructuredStream", "generate_structured", "iter_structured"]


class Engine:
    """What a dataset job needs of an open Synth."""

    def __init__(
        self,
        call: Callable[[Request, int], Awaitable[Result]],
        params: Callable[[Mapping[str, Any]], GenerationParams],
        price: Callable[[Completion], float],
        concurrency: int,
        tg: anyio.abc.TaskGroup | None = None,
    ) -> None:
        self.call = call
        self.params = params
        self.price = price
        self.concurrency = concurrency
        #: The open Synth's task group: a stream's producer runs there, so the
        #: consumer may stop reading at any point without unwinding a task group.
        self.tg = tg


#: Generation parameters that may be given as distributions (sampled per request).
_SAMPLED = ("temperature", "top_p")


def _job(
    engine: Engine,
    schema: Any,
    *,
    count: int,
    instructions: str,
    attributes: Mapping[str, Any] | None,
    per_call: int,
    max_corrections: int,
    max_restarts: int,
    dedup_outputs: float | None,
    seed: int,
    params: Mapping[str, Any],
    context: Callable[[range], dict[str, Any]] | None = None,
) -> Any:
    from ._schema import SchemaSpec
    from ._structured import StructuredJob

    spec = schema if isinstance(schema, SchemaSpec) else SchemaSpec.of(schema)
    fixed = {k: v for k, v in params.items() if not (k in _SAMPLED and isinstance(v, Mapping))}
    sampled = {k: v for k, v in params.items() if k not in fixed}
    return StructuredJob(
        engine.call,
        spec,
        count=count,
        instructions=instructions,
        attributes=attributes,
        per_call=per_call,
        max_corrections=max_corrections,
        max_restarts=max_restarts,
        dedup_outputs=dedup_outputs,
        seed=seed,
        params=sampled,
        base=engine.params(fixed),
        concurrency=engine.concurrency,
        price=engine.price,
        context=context,
    )


async def generate_structured(
    engine: Engine,
    schema: Any,
    *,
    count: int,
    instructions: str = "",
    attributes: Mapping[str, Any] | None = None,
    per_call: int = 1,
    max_corrections: int = 2,
    max_restarts: int = 1,
    dedup_outputs: float | None = None,
    seed: int = 0,
    sink: str | Path | None = None,
    keep_records: bool = True,
    progress: Callable[[int, int, int], None] | None = None,
    **params: Any,
) -> Dataset:
    from ._dataset import Dataset
    from ._sinks import open_sink
    from ._structured import run_job

    job = _job(
        engine,
        schema,
        count=count,
        instructions=instructions,
        attributes=attributes,
        per_call=per_call,
        max_corrections=max_corrections,
        max_restarts=max_restarts,
        dedup_outputs=dedup_outputs,
        seed=seed,
        params=params,
    )
    columns = job.columns
    out = None if sink is None else open_sink(sink, columns, schema=job.spec.json_schema)
    try:
        records, rows, failures, _ = await run_job(
            job, sink=out, keep_records=keep_records, progress=progress
        )
    finally:
        if out is not None:
            out.close()
    return Dataset(
        records,
        columns,
        failures,
        _stats(job),
        model=job.spec.model,
        rows=rows if keep_records else None,
        schema=job.spec.json_schema,
    )


def iter_structured(
    engine: Engine,
    schema: Any,
    *,
    count: int,
    instructions: str = "",
    attributes: Mapping[str, Any] | None = None,
    per_call: int = 1,
    max_corrections: int = 2,
    max_restarts: int = 1,
    dedup_outputs: float | None = None,
    seed: int = 0,
    **params: Any,
) -> StructuredStream:
    job = _job(
        engine,
        schema,
        count=count,
        instructions=instructions,
        attributes=attributes,
        per_call=per_call,
        max_corrections=max_corrections,
        max_restarts=max_restarts,
        dedup_outputs=dedup_outputs,
        seed=seed,
        params=params,
    )
    if engine.tg is None:
        raise SynthError(
            "iter_structured() needs an open Synth: use it inside `async with Synth(...)`"
        )
    return StructuredStream(engine.tg, job, buffer=max(1, engine.concurrency))


_DONE: Any = object()
#: How long aclose() waits for the cancelled job to unwind.
_STOP_WAIT = 5.0


class StructuredStream:
    """Slot results of :meth:`Synth.iter_structured`, in slot order, as validated.

    The job runs as a task of the open Synth, ahead of the reader by at most
    ``buffer`` results (backpressure). Stopping early (``break``, ``aclose()``,
    leaving ``async with``) cancels the job's outstanding requests; ``stats`` is
    the account of what ran, final once the stream is exhausted.
    """

    def __init__(self, tg: anyio.abc.TaskGroup, job: StructuredJob, buffer: int) -> None:
        send, receive = anyio.create_memory_object_stream[Any](max_buffer_size=buffer)
        self._receive = receive
        self._job = job
        self._scope = anyio.CancelScope()
        self._failure: BaseException | None = None
        self._finished = False
        self._stopped = anyio.Event()
        tg.start_soon(self._produce, send)

    async def _produce(self, send: Any) -> None:
        with self._scope:
            try:
                await self._run(send)
            finally:
                self._stopped.set()

    async def _run(self, send: Any) -> None:
        from ._structured import run_job

        async with send:
            try:
                await run_job(
                    self._job, sink=None, keep_records=False, progress=None, on_result=send.send
                )
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                return  # the reader closed the stream
            except Exception as exc:  # handed to the reader, not to Synth's task group
                self._failure = exc
                return
            await send.send(_DONE)

    @property
    def columns(self) -> list[str]:
        """The row layout: the record's fields, then attribute columns."""
        return self._job.columns

    @property
    def stats(self) -> DatasetStats:
        return _stats(self._job)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> SlotResult:
        if self._finished:
            raise StopAsyncIteration
        try:
            item = await self._receive.receive()
        except anyio.EndOfStream:
            self._finished = True
            if self._failure is not None:
                raise self._failure from None
            raise SynthError(
                "the structured job stopped early: its Synth was closed; read "
                "iter_structured() results inside `async with Synth(...)`"
            ) from None
        except anyio.ClosedResourceError:
            raise StopAsyncIteration from None  # closed by our own aclose()
        if item is _DONE:
            self._finished = True
            raise StopAsyncIteration
        return item  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        """Stop the job: its outstanding requests are cancelled, and have stopped when
        this returns (a shielded wait, bounded in case the job is wedged)."""
        self._finished = True
        self._receive.close()
        self._scope.cancel()
        with anyio.move_on_after(_STOP_WAIT, shield=True):
            await self._stopped.wait()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _stats(job: StructuredJob) -> DatasetStats:
    from ._dataset import DatasetStats
    from ._diversity import distinct_n, near_duplicate_rate

    counts = job.counts
    texts = counts.texts
    return DatasetStats(
        requested=job.count,
        valid=counts.valid,
        corrected=counts.corrected,
        dropped=counts.near_duplicates,
        failed=counts.failed,
        near_duplicates=counts.near_duplicates,
        retries=counts.retries,
        restarts=counts.restarts,
        input_tokens=counts.input_tokens,
        output_tokens=counts.output_tokens,
        cost_usd=counts.cost_usd,
        near_duplicate_rate=near_duplicate_rate(texts) if texts else 0.0,
        distinct_1=distinct_n(texts, 1) if texts else 0.0,
        distinct_2=distinct_n(texts, 2) if texts else 0.0,
    )
