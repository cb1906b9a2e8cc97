"""Ray Data: our engine inside ``map_batches`` actors, one :class:`Synth` each.

Why a private event loop per actor rather than Ray's async UDFs: Ray 2.60 runs an
async ``__call__`` on a loop whose reorder stage puts finished batches on a
*blocking* queue from inside the loop, so a slow consumer freezes every request
in flight in that actor (and the Synth's own background tasks); it also has no
hook to open a resource before the first batch or close it after the last. So
each actor starts an anyio blocking portal (an event loop on a thread of its
own, uvloop when installed), enters the Synth there once (a failure to open,
such as unreachable shared limits, fails the actor at start), and closes it in
``__del__``, which Ray calls when it shuts the actor down gracefully. Ray calls
the synchronous ``__call__`` from up to ``batches_per_actor`` threads at once
(``enable_true_multi_threading``); each hands its batch to the loop and waits,
so the next batch starts while the last one's slowest requests finish, and the
Synth's ``max_concurrency`` bounds requests in flight across them.

Rows become requests through the dataset-job path of the engine (``Synth._engine``):
the router (limits, retries, fallback, budget) and the cache as ``generate_batch``
uses them, with the sample number given by the row, not counted per process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.from_thread

from .._exceptions import ConfigurationError
from .._spec import ModelSpec
from .._types import Completion, Failure, Result
from ._ids import BuiltRow, JobSpec, RowRequests

if TYPE_CHECKING:
    import ray.data
    from ray.data.checkpoint import CheckpointConfig

    from .._synth import Synth

__all__ = [
    "RESULT_COLUMNS",
    "checkpoint_config",
    "generate_ray",
    "with_ids",
    "write_results",
]

#: The result columns every output row has (after the input columns and the id),
#: with the same meaning as ``synth generate``'s output rows; unused ones are null.
RESULT_COLUMNS = (
    "ok",
    "text",
    "model",
    "finish_reason",
    "input_tokens",
    "output_tokens",
    "cost",
    "latency",
    "attempts",
    "cached",
    "error_type",
    "message",
    "status",
)
_TYPES = {
    "ok": "bool_",
    "text": "string",
    "model": "string",
    "finish_reason": "string",
    "input_tokens": "int64",
    "output_tokens": "int64",
    "cost": "float64",
    "latency": "float64",
    "attempts": "int64",
    "cached": "bool_",
    "error_type": "string",
    "message": "string",
    "status": "int64",
}
_CLOSE_SECONDS = 30.0


def _ray() -> Any:
    """``ray.data``, or a ConfigurationError saying how to get it (imported only here)."""
    try:
        return importlib.import_module("ray.data")
    except ImportError:
        raise ConfigurationError(
            "the Ray integration needs Ray Data: pip install 'agentic-synth[ray]'"
        ) from None


def _pyarrow() -> Any:
    return importlib.import_module("pyarrow")  # a dependency of ray[data]


def _backend() -> dict[str, Any]:
    try:
        importlib.import_module("uvloop")
    except ImportError:
        return {"backend": "asyncio"}
    return {"backend": "asyncio", "backend_options": {"use_uvloop": True}}


class _Flight:
    """One row id being answered in this actor: rows with the same id wait for it."""

    __slots__ = ("done", "result")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.result: Result | None = None


class _Worker:
    """The map_batches class: one open Synth per actor (see the module docstring)."""

    def __init__(self, spec: JobSpec) -> None:
        self._spec = spec
        synth = spec.make_synth()
        self._rows = RowRequests(synth, spec)
        self._checked = False
        self._flights: dict[str, _Flight] = {}
        self._stack = contextlib.ExitStack()
        try:
            portal = self._stack.enter_context(
                anyio.from_thread.start_blocking_portal(**_backend())
            )
            self._stack.callback(_close_owned_limits, portal, synth)
            self._synth: Synth = self._stack.enter_context(portal.wrap_async_context_manager(synth))
            self._limiter: anyio.CapacityLimiter = portal.call(
                _capacity, self._synth.max_concurrency
            )
        except BaseException:
            self._stack.close()
            raise
        self._engine = self._synth._engine()
        self._portal = portal

    def __call__(self, batch: Any) -> Any:
        return self._portal.call(self._process, batch)

    def close(self) -> None:
        """Close the Synth (flushing the cache, budget and shared limits), then the loop."""
        self._stack.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    async def _process(self, batch: Any) -> Any:
        names = list(batch.column_names)
        if not self._checked:
            self._rows.check_columns(names)
            self._checked = True
        rows = batch.to_pylist()
        built = [self._rows.build(row) for row in rows]
        id_column = self._spec.id_column
        given = id_column in names
        if given:
            _check_ids(id_column, batch.column(id_column).to_pylist(), built)
        results: list[Result | None] = [None] * len(built)
        async with anyio.create_task_group() as tg:
            for i, row in enumerate(built):
                if row.error is not None:
                    results[i] = Failure(row.error)
                else:
                    tg.start_soon(self._answer, results, i, row)
        return _table(batch, built, results, id_column, add_ids=not given)

    async def _answer(self, results: list[Result | None], i: int, row: BuiltRow) -> None:
        assert row.request is not None
        while True:
            flight = self._flights.get(row.row_id)
            if flight is None:
                break
            await flight.done.wait()
            if flight.result is not None:  # the same id answered here a moment ago
                results[i] = _replayed(flight.result)
                return
        flight = self._flights[row.row_id] = _Flight()
        try:
            async with self._limiter:
                result = await self._engine.call(row.request, row.sample)
            flight.result = results[i] = result
        finally:
            del self._flights[row.row_id]
            flight.done.set()


async def _capacity(total: int) -> anyio.CapacityLimiter:
    return anyio.CapacityLimiter(total)


def _close_owned_limits(portal: anyio.from_thread.BlockingPortal, synth: Synth) -> None:
    """Shared limits the job's factory built are this actor's: the Synth flushes a
    SharedLimits it was given but leaves it open, so close it after the Synth."""
    shared = synth._shared_setting
    if shared is not None and not isinstance(shared, str):
        with contextlib.suppress(Exception):
            portal.call(_bounded_close, shared)


async def _bounded_close(shared: Any) -> None:
    with anyio.move_on_after(_CLOSE_SECONDS, shield=True):
        await shared.aclose()


def _replayed(result: Result) -> Result:
    """Another row's answer for this row: nothing paid again."""
    if isinstance(result, Completion):
        return dataclasses.replace(result, cached=True, cost=0.0, attempts=0)
    return result


def _check_ids(column: str, given: list[Any], built: list[BuiltRow]) -> None:
    """Ids the input already carries (with_ids, for checkpointing) must be this
    job's: ids made with other settings would make a resume skip the wrong rows."""
    for value, row in zip(given, built, strict=True):
        if value != row.row_id:
            raise ConfigurationError(
                f"the input's {column!r} column holds ids made with other settings "
                f"({value!r} where this job computes {row.row_id!r}): the prompt, system, "
                "models, parameters, sample column or cache namespace differ. Recompute "
                "them with with_ids(...) and this job's settings, or name another id_column"
            )


def _table(
    batch: Any,
    built: list[BuiltRow],
    results: Sequence[Result | None],
    id_column: str,
    *,
    add_ids: bool,
) -> Any:
    """The input columns (one named like a result column becomes ``input_<name>``),
    the id column, then the result columns: one row per input row."""
    pa = _pyarrow()
    taken = set(RESULT_COLUMNS) | {id_column}
    names: list[str] = []
    for name in batch.column_names:
        if name != id_column or add_ids:
            while name in taken:
                name = f"input_{name}"
        taken.add(name)
        names.append(name)
    table = batch.rename_columns(names)
    if add_ids:
        table = table.append_column(id_column, pa.array([r.row_id for r in built], pa.string()))
    columns = _result_columns(results)
    for name in RESULT_COLUMNS:
        table = table.append_column(name, pa.array(columns[name], getattr(pa, _TYPES[name])()))
    return table


def _result_columns(results: Sequence[Result | None]) -> dict[str, list[Any]]:
    columns: dict[str, list[Any]] = {name: [] for name in RESULT_COLUMNS}
    for result in results:
        if result is None:  # pragma: no cover - the task group fills every slot
            raise RuntimeError("internal error: a row ended without a result")
        if isinstance(result, Completion):
            usage = result.usage
            values: tuple[Any, ...] = (
                True, result.text, result.model, result.finish_reason, usage.input_tokens,
                usage.output_tokens, result.cost, result.latency, result.attempts,
                result.cached, None, None, None,
            )  # fmt: skip
        else:
            values = (
                False, None, result.model, None, None, None, None, None, result.attempts,
                False, result.error_type, result.message, result.status,
            )  # fmt: skip
        for name, value in zip(RESULT_COLUMNS, values, strict=True):
            columns[name].append(value)
    return columns


def _job(
    *,
    prompt: str,
    models: Sequence[str | ModelSpec] | str | ModelSpec | None,
    system: str | None,
    synth_options: Mapping[str, Any] | None,
    make_synth: Callable[[], Synth] | None,
    per_actor_concurrency: int | None,
    id_column: str,
    sample_column: str | None,
    params: Mapping[str, Any],
) -> tuple[JobSpec, Synth]:
    """The job as workers rebuild it, checked here first (a bad setting fails in
    the driver, not in every actor); also the Synth it was checked with."""
    from .._synth import Synth

    if make_synth is not None:
        if models is not None or synth_options or per_actor_concurrency is not None:
            raise ConfigurationError(
                "give either make_synth (a function returning a Synth) or models / "
                "synth_options / per_actor_concurrency, not both"
            )
        factory = make_synth
    else:
        options = dict(synth_options or {})
        if "max_concurrency" in options:
            raise ConfigurationError(
                "set the requests in flight per actor with per_actor_concurrency=, "
                "not synth_options['max_concurrency']"
            )
        options["max_concurrency"] = 64 if per_actor_concurrency is None else per_actor_concurrency
        factory = functools.partial(Synth, models, **options)
    if not isinstance(id_column, str) or not id_column:
        raise ConfigurationError("id_column must be a non-empty column name")
    if id_column in RESULT_COLUMNS:
        raise ConfigurationError(f"id_column {id_column!r} is the name of a result column")
    if system is not None and "system" in params:
        raise ConfigurationError("give the system prompt once: system= or a system parameter")
    spec = JobSpec(factory, prompt, system, id_column, sample_column, dict(params))
    synth = factory()
    if not isinstance(synth, Synth):
        raise ConfigurationError(
            f"make_synth must return a Synth (not opened), got {type(synth).__name__}"
        )
    RowRequests(synth, spec)  # the prompt, system and parameters are valid
    return spec, synth


def generate_ray(
    ds: ray.data.Dataset,
    *,
    prompt: str,
    models: Sequence[str | ModelSpec] | str | ModelSpec | None = None,
    system: str | None = None,
    synth_options: Mapping[str, Any] | None = None,
    make_synth: Callable[[], Synth] | None = None,
    concurrency: int = 1,
    per_actor_concurrency: int | None = None,
    id_column: str = "synth_id",
    sample_column: str | None = None,
    batch_size: int | None = None,
    batches_per_actor: int = 2,
    num_cpus: float = 1.0,
    **params: Any,
) -> ray.data.Dataset:
    """A Dataset of one result row per input row, generated by ``concurrency``
    actors, each with its own Synth (lazy, like every Ray Data transform).

    ``prompt``: a column name (its text, or a list of messages), or a template
    whose ``{column}`` fields are filled from the row; ``system`` likewise a
    literal or a template. The Synth: ``Synth(models, max_concurrency=
    per_actor_concurrency (64), **synth_options)``, or ``make_synth()``, a
    picklable function returning a new, unopened Synth (for settings that are
    objects, such as ``SharedLimits``; any SharedLimits it makes is the actor's
    to close). It is called once here to check the settings, and once per actor.
    ``**params``: generation parameters (``max_tokens``, ``temperature``, ...).

    Each output row: the input columns (one named like a result column becomes
    ``input_<name>``), ``id_column`` (see :func:`with_ids`) and
    :data:`RESULT_COLUMNS`; a failed row has ``ok`` false and its error. Rows
    with one id (identical requests, same sample) are answered once per actor,
    and once per job through a shared cache tier. ``sample_column``: a column
    of integers >= 0 numbering the intended answers of one prompt.

    ``batch_size`` rows per batch and per output block, the unit Ray writes and
    checkpoints (default: twice the Synth's max_concurrency),
    ``batches_per_actor`` batches in progress per actor, ``num_cpus`` logical
    CPUs each actor reserves (see docs/scale-out.md for the num_cpus trap).
    """
    ray_data = _ray()
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigurationError(
            f"concurrency (actors) must be an integer >= 1, got {concurrency!r}"
        )
    if (
        isinstance(batches_per_actor, bool)
        or not isinstance(batches_per_actor, int)
        or batches_per_actor < 1
    ):
        raise ConfigurationError(
            f"batches_per_actor must be an integer >= 1, got {batches_per_actor!r}"
        )
    if not (isinstance(num_cpus, int | float) and num_cpus >= 0 and math.isfinite(num_cpus)):
        raise ConfigurationError(f"num_cpus must be a number >= 0, got {num_cpus!r}")
    spec, synth = _job(
        prompt=prompt, models=models, system=system, synth_options=synth_options,
        make_synth=make_synth, per_actor_concurrency=per_actor_concurrency,
        id_column=id_column, sample_column=sample_column, params=params,
    )  # fmt: skip
    if batch_size is None:
        batch_size = max(16, 2 * synth.max_concurrency)
    elif isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigurationError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    strategy = ray_data.ActorPoolStrategy(
        size=concurrency,
        max_concurrent_calls_per_actor=batches_per_actor,
        enable_true_multi_threading=True,
    )
    # A block is what Ray writes and checkpoints at once: blocks of one batch each, so
    # a killed job has written every batch it finished (not one file at the end).
    return ds.repartition(target_num_rows_per_block=batch_size).map_batches(
        _Worker,
        fn_constructor_args=(spec,),
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=strategy,
        num_cpus=num_cpus,
    )


def _add_ids(batch: Any, spec: JobSpec) -> Any:
    rows = RowRequests(spec.make_synth(), spec)
    rows.check_columns(list(batch.column_names))
    pa = _pyarrow()
    ids = pa.array([rows.build(row).row_id for row in batch.to_pylist()], pa.string())
    if spec.id_column in batch.column_names:
        return batch.set_column(batch.column_names.index(spec.id_column), spec.id_column, ids)
    return batch.append_column(spec.id_column, ids)


def with_ids(
    ds: ray.data.Dataset,
    *,
    prompt: str,
    models: Sequence[str | ModelSpec] | str | ModelSpec | None = None,
    system: str | None = None,
    synth_options: Mapping[str, Any] | None = None,
    make_synth: Callable[[], Synth] | None = None,
    per_actor_concurrency: int | None = None,
    id_column: str = "synth_id",
    sample_column: str | None = None,
    num_cpus: float = 0.25,
    **params: Any,
) -> ray.data.Dataset:
    """``ds`` with the id column :func:`generate_ray` computes for the same settings
    (give it the same arguments), by stateless tasks: no request is sent.

    Ray's checkpointing filters rows right after a file read, so the id must be in
    the files the job reads: write ``with_ids(...)`` once (e.g. ``write_parquet``),
    then run the checkpointed job on ``ray.data.read_parquet`` of it.
    """
    _ray()
    spec, _ = _job(
        prompt=prompt, models=models, system=system, synth_options=synth_options,
        make_synth=make_synth, per_actor_concurrency=per_actor_concurrency,
        id_column=id_column, sample_column=sample_column, params=params,
    )  # fmt: skip
    return ds.map_batches(
        functools.partial(_add_ids, spec=spec), batch_format="pyarrow", num_cpus=num_cpus
    )


def checkpoint_config(
    path: str, *, id_column: str = "synth_id", **options: Any
) -> CheckpointConfig:
    """Ray's :class:`CheckpointConfig` keyed by our row ids; set it as
    ``ray.data.DataContext.get_current().checkpoint_config`` before the job.

    ``path``: a directory every node can reach (a network file system or
    ``s3://...``). ``options`` go to Ray (``delete_checkpoint_on_success``, ...).
    A checkpointed job must read files that carry the id column (see
    :func:`with_ids`) and end in a Ray file writer (see :func:`write_results`).
    """
    _ray()
    from ray.data.checkpoint import CheckpointConfig

    return CheckpointConfig(id_column=id_column, checkpoint_path=path, **options)


def write_results(
    ds: ray.data.Dataset,
    path: str,
    *,
    format: Literal["parquet", "json"] = "parquet",
    **options: Any,
) -> None:
    """Run the job, writing its rows with Ray's own Parquet or JSON-lines writer
    (the writers Ray's checkpointing commits with); ``options`` go to the writer."""
    if format == "parquet":
        ds.write_parquet(path, **options)
    elif format == "json":
        ds.write_json(path, **options)
    else:
        raise ConfigurationError(f"format must be 'parquet' or 'json', got {format!r}")
