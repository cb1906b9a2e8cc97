"""Time series and event streams as datasets, computed locally or written by a model.

``mode="local"``: the points or events are computed under the seed (no model),
exactly ``count`` of them, streamed to the sink. ``mode="llm"``: the same
computation gives the skeleton (timestamps, values, ids, types, users), and the
model writes only each record's content (an annotation per point; a description
and metadata per event), ``per_call`` records a request, validated against the
content schema and corrected like any structured record. The merged records are
checked (count, order, spacing, range, references) before the dataset is
returned. A record whose content could not be written keeps its sampled fields
with empty content, so a series never has a hole; the slot is in ``failures``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .._exceptions import InvalidRequestError, SynthError
from ._dataset import Dataset, DatasetStats

if TYPE_CHECKING:
    from ._generate import Engine
    from ._skeleton import Skeleton
    from ._structured import SlotResult
    from ._timeseries import Trend

__all__ = ["events_dataset", "timeseries_dataset"]

Mode = Literal["local", "llm"]

_TIMESERIES_PROMPT = (
    "Below are {n} consecutive points of a time series, as JSON. For each point, in the "
    "same order, write its content as the schema asks: say what is happening at that "
    "moment, consistent with the values and their trend.\n\n{records}"
)
_EVENTS_PROMPT = (
    "Below are {n} events from an application's event stream, as JSON. For each event, in "
    "the same order, write its content as the schema asks: a realistic description of "
    "what the user did and metadata that fits the event type.\n\n{records}"
)


def _local(
    records: Iterable[dict[str, Any]],
    count: int,
    sink: str | Path | None,
    keep_records: bool,
    progress: Callable[[int, int, int], None] | None,
) -> Dataset:
    from ._sinks import open_sink

    kept: list[dict[str, Any]] = []
    columns: list[str] = []
    out = None
    written = 0
    try:
        for record in records:
            if not columns:
                columns = list(record)
                if sink is not None:
                    out = open_sink(sink, columns)
            if out is not None:
                out.write(record)
            if keep_records:
                kept.append(record)
            written += 1
            if progress is not None and written % 1000 == 0:
                progress(written, 0, count)
    finally:
        if out is not None:
            out.close()
    if progress is not None:
        progress(written, 0, count)
    stats = DatasetStats(requested=count, valid=written)
    return Dataset(kept, columns, [], stats)


async def _with_model(
    engine: Engine,
    skeleton: Skeleton,
    *,
    prompt: str,
    instructions: str,
    per_call: int,
    seed: int,
    sink: str | Path | None,
    keep_records: bool,
    progress: Callable[[int, int, int], None] | None,
    check: Callable[[list[dict[str, Any]]], list[str]],
    options: Mapping[str, Any],
    params: Mapping[str, Any],
) -> Dataset:
    from ._generate import _job, _stats
    from ._sinks import open_sink
    from ._structured import run_job

    records = skeleton.records
    fields = skeleton.content_fields
    columns = [*(records[0] if records else {}), *fields]

    def context(slots: range) -> dict[str, Any]:
        chunk = [records[i] for i in slots]
        return {"n": len(chunk), "records": json.dumps(chunk, ensure_ascii=False, indent=1)}

    job = _job(
        engine,
        skeleton.content_schema,
        count=len(records),
        instructions=instructions or prompt,
        attributes=None,
        per_call=per_call,
        max_corrections=options.get("max_corrections", 2),
        max_restarts=options.get("max_restarts", 1),
        dedup_outputs=None,
        seed=seed,
        params=params,
        context=context,
    )
    merged: list[dict[str, Any]] = []
    out = None if sink is None else open_sink(sink, columns)

    async def on_result(result: SlotResult) -> None:
        if result.record is not None:
            row = skeleton.fill_one(result.slot, result.record)
        else:  # the content could not be written: the sampled fields still stand
            row = {**records[result.slot], **dict.fromkeys(fields)}
        if out is not None:
            out.write(row)
        merged.append(row)

    try:
        _, _, failures, _ = await run_job(
            job, sink=None, keep_records=False, progress=progress, on_result=on_result
        )
    finally:
        if out is not None:
            out.close()
    problems = check(merged)
    if problems:  # the skeleton is computed, so this is a bug, not a model's mistake
        raise SynthError("the generated records do not hold together: " + "; ".join(problems))
    return Dataset(
        merged if keep_records else [],
        columns,
        failures,
        _stats(job),
    )


def _mode(mode: str) -> Mode:
    if mode not in ("local", "llm"):
        raise InvalidRequestError(f"mode must be 'local' or 'llm', got {mode!r}")
    return mode  # type: ignore[return-value]


async def timeseries_dataset(
    engine: Engine | None,
    count: int | None = None,
    *,
    start: Any = None,
    end: Any = None,
    interval: Any = None,
    metrics: Sequence[Any] | str = ("value",),
    trend: Trend = "stable",
    seasonality: bool | float = True,
    noise: float = 0.1,
    period: Any = None,
    seed: int = 0,
    mode: str = "local",
    content_schema: Mapping[str, Any] | None = None,
    instructions: str = "",
    per_call: int = 10,
    sink: str | Path | None = None,
    keep_records: bool = True,
    progress: Callable[[int, int, int], None] | None = None,
    max_corrections: int = 2,
    max_restarts: int = 1,
    **params: Any,
) -> Dataset:
    from ._timeseries import check_timeseries, iter_timeseries_local, timeseries_skeleton

    shape: dict[str, Any] = dict(
        count=count, start=start, end=end, interval=interval, metrics=metrics
    )
    if _mode(mode) == "local":
        points = iter_timeseries_local(
            **shape, trend=trend, seasonality=seasonality, noise=noise, period=period, seed=seed
        )
        total = count if count is not None else -1
        return _local(points, total, sink, keep_records, progress)
    assert engine is not None
    skeleton = timeseries_skeleton(
        **shape,
        trend=trend,
        seasonality=seasonality,
        noise=noise,
        period=period,
        seed=seed,
        content_schema=content_schema,
    )
    n = len(skeleton.records)
    return await _with_model(
        engine,
        skeleton,
        prompt=_TIMESERIES_PROMPT,
        instructions=instructions,
        per_call=per_call,
        seed=seed,
        sink=sink,
        keep_records=keep_records,
        progress=progress,
        check=lambda rows: check_timeseries(rows, count=n),
        options={"max_corrections": max_corrections, "max_restarts": max_restarts},
        params=params,
    )


async def events_dataset(
    engine: Engine | None,
    count: int = 100,
    *,
    event_types: Sequence[str] | Mapping[str, float] | None = None,
    distribution: str = "uniform",
    time_range: Any = None,
    users: int | Sequence[str] = 50,
    user_distribution: str = "uniform",
    seed: int = 0,
    mode: str = "local",
    content_schema: Mapping[str, Any] | None = None,
    instructions: str = "",
    per_call: int = 10,
    sink: str | Path | None = None,
    keep_records: bool = True,
    progress: Callable[[int, int, int], None] | None = None,
    max_corrections: int = 2,
    max_restarts: int = 1,
    **params: Any,
) -> Dataset:
    from ._events import DEFAULT_EVENT_TYPES, check_events, events_skeleton, iter_events_local

    types = DEFAULT_EVENT_TYPES if event_types is None else event_types
    shape: dict[str, Any] = dict(
        count=count,
        event_types=types,
        distribution=distribution,
        time_range=time_range,
        users=users,
        user_distribution=user_distribution,
        seed=seed,
    )
    if _mode(mode) == "local":
        return _local(iter_events_local(**shape), count, sink, keep_records, progress)
    assert engine is not None
    skeleton = events_skeleton(**shape, content_schema=content_schema)
    return await _with_model(
        engine,
        skeleton,
        prompt=_EVENTS_PROMPT,
        instructions=instructions,
        per_call=per_call,
        seed=seed,
        sink=sink,
        keep_records=keep_records,
        progress=progress,
        check=lambda rows: check_events(
            rows, count=count, users=users, event_types=types, time_range=time_range
        ),
        options={"max_corrections": max_corrections, "max_restarts": max_restarts},
        params=params,
    )
