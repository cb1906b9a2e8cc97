"""The dataset calls of a :class:`~agentic_synth.Synth`, kept out of the facade.

``Synth.generate_structured`` and friends are thin: they hand the engine (a
function that sends one request, cached under a sample number) to the jobs here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._request import GenerationParams
from .._types import Completion, Request, Result

if TYPE_CHECKING:
    from ._dataset import Dataset
    from ._structured import SlotResult

__all__ = ["Engine", "generate_structured", "iter_structured"]


class Engine:
    """What a dataset job needs of an open Synth."""

    def __init__(
        self,
        call: Callable[[Request, int], Awaitable[Result]],
        params: Callable[[Mapping[str, Any]], GenerationParams],
        price: Callable[[Completion], float],
        concurrency: int,
    ) -> None:
        self.call = call
        self.params = params
        self.price = price
        self.concurrency = concurrency


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
    columns = [*job.spec.columns, *(a for a in job.attribute_names if a not in job.spec.columns)]
    out = None if sink is None else open_sink(sink, columns, schema=job.spec.json_schema)
    try:
        records, rows, failures, seconds = await run_job(
            job, sink=out, keep_records=keep_records, progress=progress
        )
    finally:
        if out is not None:
            out.close()
    return Dataset(
        records,
        columns,
        failures,
        _stats(job, seconds),
        model=job.spec.model,
        rows=rows if keep_records else None,
        schema=job.spec.json_schema,
    )


async def iter_structured(
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
) -> AsyncIterator[SlotResult]:
    from ._structured import stream_job

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
    async for result in stream_job(job, buffer=max(1, engine.concurrency)):
        yield result


def _stats(job: Any, seconds: float) -> Any:
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
