"""Batch mode as the engine offers it: ``Synth.generate_batch(inputs, mode="batch")``,
and the job's status, collection and cancellation from anywhere.

The engine hands over what a batch job needs (its models and providers, cache,
metrics, the online send for ``retry="online"``); everything else, the plan,
the state file and the polling, lives in this package.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from .._exceptions import ConfigurationError, InvalidRequestError
from .._pipeline import unbuildable
from .._pricing import prices_for
from .._request import GenerationParams, Prompt, build_request
from .._spec import ModelSpec
from .._types import Failure, Request, Result, Usage
from ..caching._cache import CacheControl, check_control
from ..caching._key import request_digest
from ..providers import Provider, create_provider
from ..providers._batch import BatchBackend
from ._job import RETRY_CHOICES, BatchJob, BatchOptions, BatchProgress
from ._plan import custom_id, job_id
from ._state import BatchRow, ItemUpdate, JobRow, StateStore

if TYPE_CHECKING:
    from .._synth import Synth

__all__ = [
    "batch_jobs",
    "batch_mode",
    "cancel_job",
    "check_options",
    "collect_job",
    "run_batch",
]

#: Stands for an input that could not become a request, in the job's identity.
_NO_REQUEST = b"\x00" * 16


def check_options(
    poll_interval: float, max_rounds: int, retry: str, *, flags: bool = False
) -> BatchOptions:
    """The batch options, or an error naming the one to fix (``flags``: as CLI flags)."""
    name = "--poll-interval" if flags else "batch_poll_interval"
    if (
        isinstance(poll_interval, bool)
        or not isinstance(poll_interval, int | float)
        or not (poll_interval > 0 and math.isfinite(poll_interval))
    ):
        raise ConfigurationError(
            f"{name} must be a positive number of seconds, got {poll_interval!r}"
        )
    if isinstance(max_rounds, bool) or not isinstance(max_rounds, int) or max_rounds < 1:
        raise ConfigurationError(
            f"batch_max_rounds must be an integer >= 1 (attempts per input), got {max_rounds!r}"
        )
    if retry not in RETRY_CHOICES:
        raise ConfigurationError(
            f"batch_retry must be one of {', '.join(RETRY_CHOICES)}, got {retry!r}"
        )
    return BatchOptions(float(poll_interval), max_rounds, retry)  # type: ignore[arg-type,unused-ignore]


def _price(spec: ModelSpec) -> Callable[[Usage], float | None]:
    prices = prices_for(spec)
    if prices is None:
        return lambda usage: None
    return functools.partial(prices.cost, batch=True)


def _pick(
    deployments: Sequence[tuple[ModelSpec, Provider]],
) -> tuple[ModelSpec, BatchBackend]:
    """The first model, in priority order, whose provider has a batch API."""
    for spec, provider in deployments:
        make = getattr(provider, "batch_backend", None)
        backend = make() if callable(make) else None
        if backend is not None:
            return spec, backend
    names = ", ".join(s.name for s, _ in deployments)
    raise ConfigurationError(
        f"mode='batch' needs an anthropic:, openai: or sim: model; this Synth has {names}, "
        "none with a batch API (use mode='online', or add such a model)"
    )


async def _materialize(inputs: Iterable[Prompt] | AsyncIterable[Prompt]) -> list[Prompt]:
    if isinstance(inputs, AsyncIterable):
        return [item async for item in inputs]
    if isinstance(inputs, str | bytes) or not isinstance(inputs, Iterable):
        raise InvalidRequestError(
            f"generate_batch takes a list (or any iterable) of inputs, got {type(inputs).__name__}"
        )
    return list(inputs)


def _store(batch_state: str | os.PathLike[str] | None, flag: str) -> StateStore:
    if batch_state is not None and not isinstance(batch_state, str | os.PathLike):
        raise ConfigurationError(
            f"{flag} is a file path such as 'runs/batches.sqlite', got {type(batch_state).__name__}"
        )
    return StateStore.open(batch_state, flag=flag)


async def run_batch(
    synth: Synth,
    inputs: Iterable[Prompt] | AsyncIterable[Prompt],
    *,
    params: GenerationParams,
    options: BatchOptions,
    batch_state: str | os.PathLike[str] | None = None,
    cache: CacheControl = "default",
    cache_ttl: float | None = None,
    raise_on_error: bool = False,
    labels: Sequence[Any] | None = None,
    progress: Callable[[BatchProgress], None] | None = None,
    flags: bool = False,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
) -> list[Result]:
    """``synth.generate_batch(inputs, mode="batch")``: one result per input, in order.

    ``labels`` (one JSON value per input) are kept with the job's items, for
    ``synth batch collect`` to write the rows the job's inputs would get.
    """
    router = synth._require_open()
    control = check_control(cache)
    items = await _materialize(inputs)
    if labels is not None and len(labels) != len(items):
        raise InvalidRequestError("labels must give one value per input")
    spec, backend = _pick(synth._deployments)
    models = [s.name for s in synth._specs]
    requests: list[Request | None] = []
    failures: dict[int, Failure] = {}
    for i, item in enumerate(items):
        try:
            requests.append(build_request(item, params))
        except Exception as exc:
            requests.append(None)
            failures[i] = unbuildable(exc, i)
    response_cache = synth._cache if control != "off" else None
    keys: list[bytes | None] = [
        None if r is None or response_cache is None else response_cache.key(r) for r in requests
    ]
    ident = job_id(
        models, (_NO_REQUEST if r is None else request_digest(r, models) for r in requests)
    )
    store = _store(batch_state, "--batch-state" if flags else "batch_state")
    try:
        await anyio.to_thread.run_sync(
            functools.partial(
                store.begin_job,
                ident,
                models=models,
                model=spec.name,
                provider=spec.provider,
                deployment=spec.base_url or "",
                custom_ids=[custom_id(i) for i in range(len(items))],
                labels=labels,
                now=clock(),
            )
        )
        token = store.lock(
            ident, flag_hint=" (or give this run its own --batch-state PATH)" if flags else ""
        )
        try:
            await anyio.to_thread.run_sync(store.retry_unfinished, ident, clock())
            job = BatchJob(
                store=store,
                job_id=ident,
                total=len(items),
                backend=backend,
                spec=spec,
                price=_price(spec),
                metrics=synth._metrics,
                options=options,
                requests=requests,
                keys=keys,
                cache=response_cache,
                cache_read=control in ("default", "no-store"),
                cache_store=control in ("default", "no-cache"),
                cache_ttl=cache_ttl,
                online=functools.partial(synth._send, router),
                budget=synth._budget,
                concurrency=synth.max_concurrency,
                clock=clock,
                sleep=sleep,
                progress=progress,
            )
            for i, failure in failures.items():
                job.results[i] = failure
            job.progress.failed = len(failures)
            await anyio.to_thread.run_sync(
                store.record,
                ident,
                [
                    ItemUpdate(i, "failed", error_type=f.error_type, error=f.message)
                    for i, f in failures.items()
                ],
            )
            results = await job.run()
            if not job.canceled and all(r is not None for r in results):
                await anyio.to_thread.run_sync(store.set_job_status, ident, "done", clock())
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(store.unlock, ident, token)
    finally:
        store.close()
    missing = [i for i, r in enumerate(results) if r is None]
    if missing:
        raise ConfigurationError(f"internal error: batch job {ident} left inputs {missing[:10]}")
    if raise_on_error:
        for r in results:
            if isinstance(r, Failure):
                raise r.error
    return results  # type: ignore[return-value]


async def batch_mode(
    synth: Synth,
    inputs: Iterable[Prompt] | AsyncIterable[Prompt],
    mode: str,
    params: GenerationParams,
    dedup_prompts: object,
    dedup_outputs: object,
    *,
    raise_on_error: bool,
    cache: CacheControl,
    cache_ttl: float | None,
    batch_state: str | os.PathLike[str] | None,
    poll_interval: float,
    max_rounds: int,
    retry: str,
) -> list[Result]:
    """``generate_batch``'s dispatch for a ``mode`` other than ``"online"``."""
    if mode != "batch":
        raise InvalidRequestError(f"mode must be 'online' or 'batch', got {mode!r}")
    if dedup_prompts is not None or dedup_outputs is not None:
        raise InvalidRequestError(
            "near-duplicate detection (dedup_prompts / dedup_outputs) works in mode='online' "
            "only; pass dedup_prompts=None, dedup_outputs=None for mode='batch'"
        )
    return await run_batch(
        synth,
        inputs,
        params=params,
        options=check_options(poll_interval, max_rounds, retry),
        batch_state=batch_state,
        cache=cache,
        cache_ttl=cache_ttl,
        raise_on_error=raise_on_error,
    )


# -- outside a run: status, collect, cancel --------------------------------------------


def batch_jobs(
    batch_state: str | os.PathLike[str] | None = None, job: str | None = None
) -> list[tuple[JobRow, list[BatchRow]]]:
    """Jobs of a state file (newest first, or the one named) with their batches, as
    last seen."""
    store = _store(batch_state, "batch_state")
    try:
        rows = store.jobs(job)
        return [(row, store.batches(row.job_id)) for row in rows]
    finally:
        store.close()


async def _job_backend(
    row: JobRow, synth: Synth | None, flags: bool
) -> tuple[ModelSpec, BatchBackend, Provider | None]:
    """The job's deployment: from ``synth`` when it has it, else built from the state
    (provider, model, base URL; the key from the environment)."""
    if synth is not None:
        synth._require_open()
        for spec, provider in synth._deployments:
            if spec.name == row.model and (spec.base_url or "") == row.deployment:
                make = getattr(provider, "batch_backend", None)
                if callable(make):
                    return spec, make(), None
    if row.provider == "sim":
        how = "synth batch" if flags else "collect_job/cancel_job"
        raise ConfigurationError(
            f"job {row.job_id} ran on the simulator ({row.model}), whose batches live inside "
            f"the process that ran it; {how} cannot reach them from here (run the job again)"
        )
    spec = ModelSpec(row.model, base_url=row.deployment or None).resolved()
    provider = create_provider(spec, max_connections=8)
    make = getattr(provider, "batch_backend", None)
    backend = make() if callable(make) else None
    if backend is None:
        await provider.aclose()
        raise ConfigurationError(f"{row.model} has no batch API in this version of agentic-synth")
    return spec, backend, provider


async def _admin(
    job: str,
    mode: str,
    *,
    batch_state: str | os.PathLike[str] | None,
    synth: Synth | None,
    wait: float | None,
    poll_interval: float,
    flags: bool,
    clock: Callable[[], float],
    sleep: Callable[[float], Awaitable[None]],
) -> tuple[JobRow, list[Result | None]]:
    store = _store(batch_state, "--batch-state" if flags else "batch_state")
    provider: Provider | None = None
    try:
        row = store.job(job)
        if row is None:
            where = "--batch-state" if flags else "batch_state"
            raise ConfigurationError(
                f"no batch job {job} in {store.path}; list the jobs with synth batch status "
                f"(and name the file with {where} if the job used another one)"
            )
        open_batches = [
            b for b in store.batches(job) if b.status in ("running", "canceling", "ended", "failed")
        ]
        backend: BatchBackend | None = None
        if open_batches:
            spec, backend, provider = await _job_backend(row, synth, flags)
        else:  # everything is in the state already: no provider needed
            spec = ModelSpec(row.model, base_url=row.deployment or None)
        runner = store.locked_by(job)
        if mode == "cancel" and (open_batches or row.status != "done"):
            await anyio.to_thread.run_sync(store.set_job_status, job, "canceled", clock())
        job_run = BatchJob(
            store=store,
            job_id=job,
            total=row.total,
            backend=backend,
            spec=spec,
            price=_price(spec),
            metrics=None if synth is None else synth._metrics,
            options=BatchOptions(poll_interval=poll_interval),
            mode="cancel" if mode == "cancel" else "collect",
            clock=clock,
            sleep=sleep,
            wait=wait,
        )
        if runner is not None:
            # another live process runs the job: it collects; here we only ask to cancel
            if mode == "cancel":
                await job_run.load_running()
                await job_run.request_cancel()
            return row, [None] * row.total
        token = store.lock(job)
        try:
            if mode == "cancel":
                await job_run.load_running()
                await job_run.request_cancel()
            results = await job_run.run()
            if (
                mode == "collect"
                and row.status == "running"
                and all(r is not None for r in results)
            ):
                await anyio.to_thread.run_sync(store.set_job_status, job, "done", clock())
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(store.unlock, job, token)
        return store.job(job) or row, results
    finally:
        if provider is not None:
            with anyio.CancelScope(shield=True):
                await provider.aclose()
        store.close()


async def collect_job(
    job: str,
    *,
    batch_state: str | os.PathLike[str] | None = None,
    synth: Synth | None = None,
    flags: bool = False,
    clock: Callable[[], float] = time.time,
) -> tuple[JobRow, list[Result | None]]:
    """Read every result the job's ended batches hold into its state; returns the job
    and each input's result so far (``None``: still running). Submits nothing."""
    return await _admin(
        job,
        "collect",
        batch_state=batch_state,
        synth=synth,
        wait=None,
        poll_interval=1.0,
        flags=flags,
        clock=clock,
        sleep=anyio.sleep,
    )


async def cancel_job(
    job: str,
    *,
    batch_state: str | os.PathLike[str] | None = None,
    synth: Synth | None = None,
    wait: float = 60.0,
    poll_interval: float = 2.0,
    flags: bool = False,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
) -> tuple[JobRow, list[Result | None]]:
    """Cancel the job's running batches at the provider, wait up to ``wait`` seconds
    for them to end, and keep what finished; inputs never submitted end canceled. A
    rerun of the job submits what was canceled again."""
    return await _admin(
        job,
        "cancel",
        batch_state=batch_state,
        synth=synth,
        wait=wait,
        poll_interval=poll_interval,
        flags=flags,
        clock=clock,
        sleep=sleep,
    )
