"""`Synth`: the public facade. Validates, schedules, routes, measures.

The path of one request, top to bottom: :class:`Synth` builds and validates the
request (:mod:`._request`), the scheduler bounds concurrency over lazy input
(:mod:`._scheduler`), the router picks a model and sends it
(:mod:`.routing`), providers speak the wire formats (:mod:`.providers`), and
the metrics (:mod:`.monitor`) record it. Nothing below reaches back up.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections import deque
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
    Sized,
)
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._budget import Budget, BudgetAccount
from ._dedup import DedupAction, NearDuplicateIndex, OutputDedup, PromptDedup, make_index
from ._estimate import CostEstimate, estimate_job
from ._exceptions import ConfigurationError, InvalidRequestError, SynthError
from ._governor import MemoryGovernor, cgroup_memory_limit, parse_size
from ._log import get_logger
from ._pipeline import Pipeline
from ._request import GenerationParams, Prompt, build_request
from ._scheduler import Governor, InOrder, InputFeed, Timings, run_workers, single_error
from ._spec import ModelSpec, default_models, parse_model
from ._types import _FINISH_ALIASES as _FINISH
from ._types import (
    Completion,
    Failure,
    ProviderStreamEnd,
    Request,
    Result,
    StreamCompleted,
    StreamEvent,
    TextDelta,
    normalize_finish_reason,
)
from .caching._build import open_cache
from .caching._cache import Cache, CacheControl, ResponseCache, check_control
from .datasets._generate import Engine, StructuredStream, generate_structured, iter_structured
from .datasets._series import events_dataset, timeseries_dataset
from .monitor import AnalysisReport, BottleneckAnalyzer, Metrics, MetricsSnapshot
from .monitor._probe import watch_process
from .providers import Provider, create_provider, validate_spec
from .routing import BreakerConfig, RetryPolicy, Routed, Router
from .routing._strategy import make_strategy

if TYPE_CHECKING:
    from .datasets._dataset import Dataset
    from .routing._shared_limits import SharedLimits

__all__ = ["BatchStream", "CompletionStream", "Synth"]

log = get_logger("agentic_synth")


_DEFAULT: Any = object()
#: Seconds closing the providers' connections may take on exit before we give up on them.
_CLOSE_SECONDS = 5.0
#: Finished prompt-dedup originals whose results are kept for later duplicates, per
#: unit of max_concurrency.
_DEDUP_RETAIN = 16


class _DedupConfig:
    """Near-duplicate settings of a Synth, overridable per batch; checked at once."""

    __slots__ = ("action", "outputs", "prompts")

    def __init__(self, prompts: Any, outputs: Any, action: Any) -> None:
        if action not in ("flag", "drop"):
            raise InvalidRequestError(f"dedup_action must be 'flag' or 'drop', got {action!r}")
        for name, value in (("dedup_prompts", prompts), ("dedup_outputs", outputs)):
            if value is not None and isinstance(value, int | float):
                if isinstance(value, bool) or not 0.0 < value <= 1.0:
                    raise InvalidRequestError(
                        f"{name} must be a Jaccard threshold in (0, 1] such as 0.8, got {value!r}"
                    )
        self.prompts = prompts
        self.outputs = outputs
        self.action: DedupAction = action

    def override(self, prompts: Any, outputs: Any, action: Any) -> _DedupConfig:
        if prompts is _DEFAULT and outputs is _DEFAULT and action is _DEFAULT:
            return self
        return _DedupConfig(
            self.prompts if prompts is _DEFAULT else prompts,
            self.outputs if outputs is _DEFAULT else outputs,
            self.action if action is _DEFAULT else action,
        )


class Synth:
    """Generate with LLMs at high throughput.

    >>> async with Synth(models=["sim:sim-1"], max_concurrency=64) as synth:  # doctest: +SKIP
    ...     done = await synth.generate("Write a haiku about rain.")
    """

    def __init__(
        self,
        models: Sequence[str | ModelSpec] | str | ModelSpec | None = None,
        *,
        max_concurrency: int = 64,
        max_tokens: int = 1024,
        defaults: Mapping[str, Any] | None = None,
        strategy: str = "priority",
        retry: RetryPolicy | None = None,
        breaker: BreakerConfig | None = None,
        deadline: float | None = 300.0,
        dedup_prompts: float | NearDuplicateIndex | None = None,
        dedup_outputs: float | NearDuplicateIndex | None = None,
        dedup_action: DedupAction = "flag",
        cache: str | Sequence[Any] | Cache | None = None,
        memory_limit: int | str | None = None,
        slo: Mapping[str, float] | None = None,
        monitor: bool = True,
        budget: Budget | float | None = None,
        shared_limits: SharedLimits | str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int):
            raise ConfigurationError(
                f"max_concurrency must be a positive integer, got {max_concurrency!r}"
            )
        if max_concurrency <= 0:
            raise ConfigurationError(
                f"max_concurrency must be >= 1, got {max_concurrency}; e.g. max_concurrency=64"
            )
        if models is None:
            models = default_models()
        if isinstance(models, str | ModelSpec):
            models = [models]
        if not models:
            raise ConfigurationError(
                "models is empty; pass at least one, e.g. Synth(models=['sim:sim-1'])"
            )
        specs = [parse_model(m).resolved() for m in models]
        for spec in specs:
            validate_spec(spec)
        names = [s.name + (f"@{s.base_url}" if s.base_url else "") for s in specs]
        if len(set(names)) != len(names):
            raise ConfigurationError(
                "the same model deployment is listed twice; give each entry its own base_url or "
                "remove the repeat"
            )
        make_strategy(strategy)  # fail on a bad name here, not on first use
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigurationError(
                f"retry must be a RetryPolicy(...), got {type(retry).__name__}; "
                "e.g. retry=RetryPolicy(max_attempts=4)"
            )
        if breaker is not None and not isinstance(breaker, BreakerConfig):
            raise ConfigurationError(
                f"breaker must be a BreakerConfig(...), got {type(breaker).__name__}; "
                "e.g. breaker=BreakerConfig(cooldown=30)"
            )
        if deadline is not None and not (deadline > 0 and math.isfinite(deadline)):
            raise ConfigurationError(
                f"deadline must be a positive number of seconds or None, got {deadline!r}"
            )
        if shared_limits is not None and not isinstance(shared_limits, str):
            from .routing._shared_limits import SharedLimits as _Shared

            if not isinstance(shared_limits, _Shared):
                raise ConfigurationError(
                    "shared_limits must be a Redis URL ('redis://host:6379/0') or a "
                    f"SharedLimits(...), got {type(shared_limits).__name__}"
                )
        #: Rate limits shared by every process through Redis: a URL (this Synth opens
        #: and closes them) or a SharedLimits the caller owns (opened, never closed here).
        self._shared_setting = shared_limits
        self._shared: SharedLimits | None = None
        self._budget_settings = Budget.coerce(budget)
        self._budget: BudgetAccount | None = None
        if self._budget_settings is not None:
            from ._pricing import prices_for

            unpriced = [s.name for s in specs if prices_for(s) is None]
            if unpriced:
                raise ConfigurationError(
                    f"a budget needs a price for every model; {', '.join(unpriced)} has none in "
                    "the price table: give ModelSpec(..., input_price=..., output_price=...) "
                    "(USD per token) or input_price/output_price in its [[models]] entry"
                )
        self._dedup = _DedupConfig(dedup_prompts, dedup_outputs, dedup_action)
        self._cache_settings = Cache.coerce(cache)
        self._cache: ResponseCache | None = None
        self._memory_limit = (
            parse_size(memory_limit) if memory_limit is not None else cgroup_memory_limit()
        )
        self._governor: MemoryGovernor | None = None
        self._specs = specs
        self._routing: dict[str, Any] = {
            "strategy": strategy,
            "retry": retry,
            "breaker": breaker,
            "deadline": deadline,
        }
        self.max_concurrency = max_concurrency
        self._params = GenerationParams.from_kwargs(max_tokens=max_tokens, **dict(defaults or {}))
        self._clock = clock
        self._metrics = Metrics(
            clock, concurrency_cap=max_concurrency, slo=slo, detailed=bool(monitor)
        )
        self._router: Router | None = None
        #: Each model with its provider while open (batch mode finds batch APIs here).
        self._deployments: list[tuple[ModelSpec, Provider]] = []
        self._tg: anyio.abc.TaskGroup | None = None

    def __repr__(self) -> str:
        state = "open" if self._router is not None else "closed"
        models = ", ".join(s.name for s in self._specs)
        return f"Synth(models=[{models}], max_concurrency={self.max_concurrency}, {state})"

    @property
    def models(self) -> list[str]:
        return [s.name for s in self._specs]

    # -- lifecycle ----------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._router is not None:
            raise SynthError("this Synth is already open; use one `async with` block at a time")
        providers: dict[tuple[object, ...], Provider] = {}
        pairs: list[tuple[ModelSpec, Provider]] = []
        cache: ResponseCache | None = None
        budget: BudgetAccount | None = None
        shared: SharedLimits | None = None
        try:
            # Everything is built before the task group is entered, and undone if any
            # part fails, so a failed __aenter__ leaves nothing open behind it.
            for spec in self._specs:
                key: tuple[object, ...] = (spec.provider, spec.base_url, spec.api_key)
                if spec.provider == "sim":  # each simulated model has its own knobs
                    key = (spec.provider, spec.name)
                if key not in providers:
                    providers[key] = create_provider(spec, max_connections=self.max_concurrency)
                pairs.append((spec, providers[key]))
            self._metrics.reset()  # this session's figures, from now
            if self._budget_settings is not None:
                budget = await anyio.to_thread.run_sync(
                    functools.partial(BudgetAccount, self._budget_settings, clock=self._clock)
                )
            if self._shared_setting is not None and any(
                s.rpm or s.input_tpm or s.output_tpm for s in self._specs
            ):  # only limited deployments use them
                shared = await self._open_shared_limits()
            router = Router(
                pairs,
                metrics=self._metrics,
                clock=self._clock,
                budget=budget,
                shared_limits=shared,
                **self._routing,
            )
            if self._cache_settings is not None:
                cache = await open_cache(
                    self._cache_settings, models=[s.name for s in self._specs], clock=self._clock
                )
            tg = anyio.create_task_group()
            await tg.__aenter__()
            if self._metrics.detailed:
                tg.start_soon(watch_process, self._metrics)
            if budget is not None:
                tg.start_soon(budget.run_flusher)
        except BaseException:
            with anyio.move_on_after(_CLOSE_SECONDS, shield=True):
                if shared is not None and isinstance(self._shared_setting, str):
                    await shared.aclose()
                if budget is not None:
                    budget.close()
                if cache is not None:
                    await cache.aclose()
                for p in providers.values():
                    await p.aclose()
            raise
        self._tg = tg
        self._router = router
        self._deployments = pairs
        self._cache = cache
        self._budget = budget
        self._shared = shared
        self._metrics.budget_probe = None if budget is None else budget.snapshot
        self._metrics.cache_probe = None if cache is None else cache.stats
        self._governor = self._open_governor(cache)
        self._metrics.memory_probe = None if self._governor is None else self._governor.snapshot
        return self

    async def _open_shared_limits(self) -> SharedLimits:
        """The shared limits, checked now: Redis down or without scripting fails the
        job at the start (unless the SharedLimits opted into per-process limits)."""
        from .routing._shared_limits import SharedLimits as _Shared

        setting = self._shared_setting
        shared = (
            _Shared(setting, namespace="agentic-synth") if isinstance(setting, str) else setting
        )
        assert shared is not None
        try:
            await shared.open()
        except BaseException:
            if isinstance(setting, str):
                with anyio.move_on_after(_CLOSE_SECONDS, shield=True):
                    await shared.aclose()
            raise
        return shared

    def _open_governor(self, cache: ResponseCache | None) -> MemoryGovernor | None:
        if self._memory_limit is None:
            return None
        try:
            governor = MemoryGovernor(
                self._memory_limit, max_in_progress=self.max_concurrency * 2, clock=self._clock
            )
        except OSError:
            log.warning("memory_limit_unsupported", reason="no /proc/self/statm on this system")
            return None
        evict = None if cache is None else cache.evictor()
        if evict is not None:
            governor.add_evictor(evict)
        if cache is not None:
            governor.add_admission(cache.set_memory_admission)
        return governor

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tg, router, cache, budget = self._tg, self._router, self._cache, self._budget
        shared = self._shared
        self._tg = self._router = self._cache = None
        self._budget = None
        self._shared = None
        if self._governor is not None:
            self._governor.close()
            self._governor = None
        try:
            if tg is not None:
                tg.cancel_scope.cancel()  # background batch streams end with the engine
                try:
                    await tg.__aexit__(exc_type, exc, tb)
                except BaseExceptionGroup as group:
                    # The task group wraps what the body raised; the user should see
                    # their own exception, not a group around it.
                    single = single_error(group)
                    if exc is not None and single is exc:
                        return
                    raise single from None
        finally:
            if budget is not None:
                # writes back the spending and gives the unused allowance back; a ledger
                # that fails here must not keep the cache and connections from closing
                with anyio.move_on_after(_CLOSE_SECONDS, shield=True):
                    try:
                        await anyio.to_thread.run_sync(budget.close)
                    except Exception as exc:
                        log.error("budget_close_failed", error=str(exc))
            if cache is not None:
                await cache.aclose()  # commits what is pending, bounded per tier
            if router is not None:
                # bounded: a server that never closes its side cannot hold up the exit
                with anyio.move_on_after(_CLOSE_SECONDS, shield=True):
                    await router.aclose()
            if shared is not None:
                with anyio.move_on_after(_CLOSE_SECONDS, shield=True):
                    if isinstance(self._shared_setting, str):
                        await shared.aclose()  # ours: what the limiters owe Redis, then close
                    elif router is not None:
                        await router.flush_limits()  # the caller's: flushed, left open

    def _require_open(self) -> Router:
        if self._router is None:
            raise SynthError(
                "Synth is not open: use it as `async with Synth(...) as synth:` "
                "(or the synchronous helpers agentic_synth.generate / generate_batch)"
            )
        return self._router

    async def optimize(self) -> dict[str, Any]:
        """Give memory and disk back now: purge expired cache entries, checkpoint the
        persistent cache, collect garbage, return freed heap to the system. Returns
        what it did."""
        self._require_open()
        done: dict[str, Any] = {}
        if self._cache is not None:
            done["cache"] = await self._cache.optimize()
        if self._governor is not None:
            done["memory"] = self._governor.optimize()
        else:
            import gc

            done["memory"] = {"gc_objects": gc.collect()}
        return done

    # -- datasets -------------------------------------------------------------------

    def _engine(self) -> Engine:
        """The engine as dataset jobs see it: one request (cached under a sample
        number the job chooses), parameters, prices, concurrency."""
        router = self._require_open()
        cache = self._cache
        send = self._send

        async def call(request: Request, sample: int) -> Result:
            # a dataset sends the same request for different samples on purpose: it is
            # not a repeat a cache should serve
            if cache is not None:
                return await cache.fetch(
                    request,
                    None,
                    lambda: send(router, request, None, sampled=True),
                    sample=sample,
                )
            return await send(router, request, None, sampled=True)

        def price(completion: Completion) -> float:
            return completion.cost or 0.0

        return Engine(call, self._params_for, price, self.max_concurrency, self._tg)

    async def generate_structured(self, schema: Any, *, count: int, **options: Any) -> Dataset:
        """``count`` records valid against ``schema`` (a JSON Schema dict or a pydantic
        model class), as a :class:`~agentic_synth.datasets.Dataset`.

        Options: ``instructions`` (a template filled by ``attributes``),
        ``attributes`` (``{"topic": [...], "difficulty": {"easy": 0.7, "hard": 0.3}}``),
        ``per_call`` (records per request), ``max_corrections`` / ``max_restarts``,
        ``dedup_outputs`` (Jaccard threshold: near-duplicates are replaced), ``seed``,
        ``sink`` (a ``.jsonl``/``.csv``/``.parquet`` path written as records arrive),
        ``keep_records``, ``progress`` (``(valid, failed, requested)`` callback), and
        generation parameters (``temperature`` / ``top_p`` may be distributions such
        as ``{"uniform": [0.6, 1.0]}``).
        """
        return await generate_structured(self._engine(), schema, count=count, **options)

    def iter_structured(self, schema: Any, *, count: int, **options: Any) -> StructuredStream:
        """:meth:`generate_structured` as a stream of slot results, in slot order, as
        they are validated (``result.record``, or ``result.failure``); its ``stats``
        is the job's account once the stream is exhausted. Stopping early cancels the
        job's outstanding requests."""
        return iter_structured(self._engine(), schema, count=count, **options)

    async def generate_timeseries(self, count: int | None = None, **options: Any) -> Dataset:
        """A time series (the seed's options: ``start``, ``end``, ``interval``,
        ``metrics``, ``trend``, ``seasonality``, ``noise``, ``seed``). ``mode="local"``
        computes it (no model); ``mode="llm"`` has the model annotate every point
        (``per_call`` points a request) on top of the computed skeleton."""
        engine = None if options.get("mode", "local") == "local" else self._engine()
        return await timeseries_dataset(engine, count, **options)

    async def generate_events(self, count: int = 100, **options: Any) -> Dataset:
        """An event stream (the seed's options: ``event_types``, ``distribution``,
        ``time_range``, ``users``, ``seed``), exactly ``count`` events sorted by time.
        ``mode="local"`` computes it; ``mode="llm"`` has the model write each event's
        description and metadata on top of the computed skeleton."""
        engine = None if options.get("mode", "local") == "local" else self._engine()
        return await events_dataset(engine, count, **options)

    def estimate(
        self,
        inputs: Iterable[Prompt],
        *,
        expected_output_tokens: int | None = None,
        mode: str = "online",
        **params: Any,
    ) -> CostEstimate:
        """What ``generate_batch(inputs, mode=mode, **params)`` would cost, without
        sending anything: input tokens counted, output at its worst case (every
        ``max_tokens`` used) and at ``expected_output_tokens`` per request if given,
        priced at the first model's prices (batch prices for ``mode="batch"``).
        Works on a closed Synth too."""
        return estimate_job(
            self._specs,
            self._params_for(params),
            inputs,
            expected_output_tokens=expected_output_tokens,
            mode=mode,
        )

    def analyze(self) -> AnalysisReport:
        """What limits this engine's work so far, ranked, with evidence and the setting
        to change (:class:`~agentic_synth.monitor.BottleneckAnalyzer`)."""
        return BottleneckAnalyzer().analyze(self._metrics.snapshot())

    def metrics(self) -> MetricsSnapshot:
        """A snapshot of requests, errors, latency percentiles, tokens, in flight."""
        return self._metrics.snapshot()

    # -- one request --------------------------------------------------------------

    def _params_for(self, params: Mapping[str, Any]) -> GenerationParams:
        return GenerationParams.from_kwargs(self._params, **params) if params else self._params

    async def _send(
        self, router: Router, request: Request, index: int | None, *, sampled: bool = False
    ) -> Result:
        """One request to its one result (a Completion, or a Failure record); only a
        job-stopping error escapes. Metrics are recorded here; ``sampled``: a request
        repeated on purpose (a dataset's samples), left out of repeat detection."""
        metrics = self._metrics
        started = self._clock()
        metrics.request_started()
        if metrics.detailed and not sampled:
            metrics.sent(request)
        try:
            routed = await router.complete(request)
        except ConfigurationError as exc:
            metrics.request_finished(
                self._clock() - started, exc, model=getattr(exc, "model", None)
            )
            raise  # the whole job cannot work (e.g. every key rejected): stop the batch
        except Exception as exc:
            metrics.request_finished(
                self._clock() - started, exc, model=getattr(exc, "model", None)
            )
            if not isinstance(exc, SynthError):
                # a bug below us must not sink a million-item batch: record it, loudly
                log.error("unexpected_error", index=index, error=repr(exc), exc_info=exc)
            return Failure(
                exc,
                index=index,
                model=getattr(exc, "model", None),
                attempts=getattr(exc, "attempts", 0),
            )
        except BaseException:
            metrics.request_cancelled()
            raise
        latency = self._clock() - started
        completion = _completion(routed, latency)
        usage = completion.usage
        metrics.request_finished(
            latency,
            output_tokens=usage.output_tokens,
            model=completion.model,
            input_tokens=usage.input_tokens,
        )
        completion.index = index
        return completion

    async def generate(
        self,
        prompt: Prompt,
        *,
        cache: CacheControl = "default",
        cache_ttl: float | None = None,
        **params: Any,
    ) -> Completion:
        """Generate one completion; raises the request's error on failure.

        ``cache`` (when the Synth has a cache): ``"no-cache"`` skips the read,
        ``"no-store"`` the store, ``"off"`` both; ``cache_ttl`` overrides the
        persistent tiers' TTL for this answer.
        """
        router = self._require_open()
        request = build_request(prompt, self._params_for(params))
        if self._cache is not None and check_control(cache) != "off":
            result = await self._cache.fetch(
                request,
                None,
                lambda: self._send(router, request, None),
                control=cache,
                ttl=_check_ttl(cache_ttl),
            )
        else:
            result = await self._send(router, request, None)
        if isinstance(result, Failure):
            raise result.error
        return result

    # -- batches ------------------------------------------------------------------

    def _make_processor(
        self,
        router: Router,
        params: GenerationParams,
        dedup: _DedupConfig,
        control: CacheControl = "default",
        ttl: float | None = None,
    ) -> Callable[[int, Prompt], Awaitable[Result]]:
        prompt_dedup = (
            None
            if dedup.prompts is None
            else PromptDedup(
                make_index(dedup.prompts, "dedup_prompts"),
                self._metrics,
                retain=_DEDUP_RETAIN * self.max_concurrency,
            )
        )
        output_dedup = (
            None
            if dedup.outputs is None
            else OutputDedup(
                make_index(dedup.outputs, "dedup_outputs"), self._metrics, dedup.action
            )
        )
        cache = self._cache
        return Pipeline(
            functools.partial(self._send, router),  # no extra coroutine frame per input
            params,
            prompt_dedup=prompt_dedup,
            output_dedup=output_dedup,
            cache=cache,
            control=check_control(control),
            ttl=_check_ttl(ttl),
        ).process

    def _workers_for(self, inputs: object) -> int:
        # An input holds its worker until its answer is committed to the persistent
        # cache (if any): at a crash, at most max_concurrency answers are lost.
        if isinstance(inputs, Sized) and not isinstance(inputs, AsyncIterable):
            return max(1, min(self.max_concurrency, len(inputs)))
        return self.max_concurrency

    async def generate_batch(
        self,
        inputs: Iterable[Prompt] | AsyncIterable[Prompt],
        *,
        raise_on_error: bool = False,
        dedup_prompts: Any = _DEFAULT,
        dedup_outputs: Any = _DEFAULT,
        dedup_action: Any = _DEFAULT,
        cache: CacheControl = "default",
        cache_ttl: float | None = None,
        mode: str = "online",
        batch_state: str | os.PathLike[str] | None = None,
        batch_poll_interval: float = 30.0,
        batch_max_rounds: int = 3,
        batch_retry: str = "batch",
        **params: Any,
    ) -> list[Result]:
        """One result per input, in input order: a Completion or a Failure.

        One input failing never fails the batch, unless ``raise_on_error=True``
        (then the first error is raised and the rest of the batch is cancelled).
        ``dedup_prompts`` / ``dedup_outputs`` / ``dedup_action`` override the
        Synth's near-duplicate settings for this batch; ``cache`` / ``cache_ttl``
        are the per-call cache controls (see :meth:`generate`).

        ``mode="batch"`` sends the inputs through the provider's batch API (half the
        price, answers within 24 h; see docs/batch.md): ``batch_state`` (the job's
        state file), ``batch_poll_interval`` (longest seconds between polls),
        ``batch_max_rounds`` (attempts per input), ``batch_retry`` (``"batch"``,
        ``"online"`` or ``"none"``: where errored items go).
        """
        router = self._require_open()
        call_params = self._params_for(params)
        dedup = self._dedup.override(dedup_prompts, dedup_outputs, dedup_action)
        if mode != "online":
            from .batch._run import batch_mode

            return await batch_mode(
                self, inputs, mode, call_params, dedup.prompts, dedup.outputs,
                raise_on_error=raise_on_error, cache=cache, cache_ttl=_check_ttl(cache_ttl),
                batch_state=batch_state, poll_interval=batch_poll_interval,
                max_rounds=batch_max_rounds, retry=batch_retry,
            )  # fmt: skip
        feed: InputFeed[Prompt] = InputFeed(inputs)
        results: list[Result | None] = []
        process = self._make_processor(router, call_params, dedup, cache, cache_ttl)

        def store(index: int, result: Result) -> None:
            if raise_on_error and isinstance(result, Failure):
                raise result.error
            if index >= len(results):
                results.extend([None] * (index + 1 - len(results)))
            results[index] = result

        await run_workers(
            feed,
            process,
            store,
            concurrency=self._workers_for(inputs),
            admit=router.admit,
            governor=self._governor,
            timings=self._metrics,
        )
        missing = [i for i, r in enumerate(results) if r is None]
        if missing or len(results) != feed.count:
            raise SynthError(f"internal error: no result for inputs {missing[:10]}")
        return results  # type: ignore[return-value]

    def iter_batch(
        self,
        inputs: Iterable[Prompt] | AsyncIterable[Prompt],
        *,
        ordered: bool = False,
        dedup_prompts: Any = _DEFAULT,
        dedup_outputs: Any = _DEFAULT,
        dedup_action: Any = _DEFAULT,
        cache: CacheControl = "default",
        cache_ttl: float | None = None,
        **params: Any,
    ) -> BatchStream:
        """Async iterator of ``(index, result)`` in completion order (``ordered=True``:
        in input order).

        Input is consumed lazily; at most ``max_concurrency`` requests are in flight
        and results wait in a buffer of the same size, so memory stays bounded. In
        input order, results that finish early wait for earlier ones, and no input
        more than ``4 * max_concurrency`` ahead of the output is started.
        Use ``async with synth.iter_batch(...) as results:`` to stop the batch
        exactly when the block ends; a plain ``async for`` stops it when the
        iterator is dropped. A batch that stops for any other reason (its Synth
        closed, every key rejected, the input iterator failed) raises.
        """
        router = self._require_open()
        assert self._tg is not None
        call_params = self._params_for(params)
        dedup = self._dedup.override(dedup_prompts, dedup_outputs, dedup_action)
        feed: InputFeed[Prompt] = InputFeed(inputs)
        return BatchStream(
            self._tg,
            feed,
            self._make_processor(router, call_params, dedup, cache, cache_ttl),
            self._workers_for(inputs),
            admit=router.admit,
            governor=self._governor,
            ordered=ordered,
            timings=self._metrics,
        )

    # -- streaming ----------------------------------------------------------------

    def generate_stream(self, prompt: Prompt, **params: Any) -> CompletionStream:
        """Async iterator of :class:`TextDelta` events, then one :class:`StreamCompleted`.

        Breaking out of the loop or cancelling closes the HTTP stream; use
        ``async with synth.generate_stream(...) as stream:`` to close it exactly
        at the end of the block.
        """
        router = self._require_open()
        request = build_request(prompt, self._params_for(params))
        return CompletionStream(self._stream_events(router, request))

    async def _stream_events(self, router: Router, request: Any) -> AsyncIterator[StreamEvent]:
        metrics = self._metrics
        clock = self._clock
        started = clock()
        ttft: float | None = None
        parts: list[str] = []
        routed = Routed(model="", attempts=0, fallbacks=())
        end: ProviderStreamEnd | None = None
        metrics.request_started()
        error: BaseException | None = None
        # ITL: gaps between non-empty chunks, less the time the reader held each one
        # (suspended at ``yield``); recorded with TTFT only if the stream succeeds
        gaps: list[float] = []
        last_chunk = reader = 0.0
        try:
            async for event in router.stream(request, routed):
                if isinstance(event, TextDelta):
                    if event.text:
                        now = clock()
                        if ttft is None:  # TTFT: the first non-empty text
                            ttft = now - started
                        else:
                            gaps.append(now - last_chunk - reader)
                        last_chunk, reader = now, 0.0
                    parts.append(event.text)
                    handed = clock()
                    yield event
                    reader += clock() - handed
                else:
                    end = event
        except Exception as exc:
            error = exc
            raise
        finally:
            latency = clock() - started
            if end is None and error is None:
                # closed early by the consumer (break, cancel): not an engine error
                metrics.request_cancelled()
            else:
                if error is None and ttft is not None:
                    metrics.record_ttft(ttft)
                    for gap in gaps:
                        metrics.record_itl(gap)
                metrics.request_finished(
                    latency,  # a failure's counts for the listeners only
                    error,
                    ttft=ttft,
                    output_tokens=0 if end is None else end.usage.output_tokens,
                    model=getattr(error, "model", None) or routed.model or None,
                    input_tokens=0 if end is None else end.usage.input_tokens,
                )
        assert end is not None
        yield StreamCompleted(
            Completion(
                text="".join(parts),
                model=routed.model,
                usage=end.usage,
                latency=latency,
                finish_reason=normalize_finish_reason(end.finish_reason),
                raw_finish_reason=end.finish_reason,
                attempts=routed.attempts,
                request_id=end.request_id,
                ttft=ttft,
                fallbacks=routed.fallbacks,
                cost=routed.cost,
            )
        )


def _check_ttl(ttl: float | None) -> float | None:
    if ttl is not None and (isinstance(ttl, bool) or not (ttl > 0 and math.isfinite(ttl))):
        raise InvalidRequestError(f"cache_ttl must be a positive number of seconds, got {ttl!r}")
    return ttl


def _completion(routed: Routed, latency: float) -> Completion:
    response = routed.response
    assert response is not None
    raw = response.finish_reason
    return Completion(
        text=response.text,
        model=routed.model,
        usage=response.usage,
        latency=latency,
        finish_reason=_FINISH.get(raw) or normalize_finish_reason(raw),
        raw_finish_reason=raw,
        attempts=routed.attempts,
        request_id=response.request_id,
        fallbacks=routed.fallbacks,
        cost=routed.cost,
    )


class CompletionStream:
    """The events of one streamed generation; closes its connection when closed."""

    def __init__(self, events: AsyncIterator[StreamEvent]) -> None:
        self._events = events
        self.completion: Completion | None = None

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> StreamEvent:
        event = await anext(self._events)
        if isinstance(event, StreamCompleted):
            self.completion = event.completion
        return event

    async def aclose(self) -> None:
        await self._events.aclose()  # type: ignore[attr-defined]

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def text(self) -> str:
        """Consume the stream and return the whole text."""
        parts = [e.text async for e in self if isinstance(e, TextDelta)]
        return "".join(parts)


_DONE = object()


class _BatchState:
    """What the batch's background task shares with its BatchStream (not the
    stream itself, so dropping the stream can stop the task)."""

    __slots__ = ("failure", "scope", "unsent")

    def __init__(self) -> None:
        self.scope = anyio.CancelScope()
        self.failure: BaseException | None = None
        #: Results whose hand-over was interrupted (the batch stopped meanwhile).
        self.unsent: list[tuple[int, Result]] = []


async def _run_batch(
    state: _BatchState,
    send: MemoryObjectSendStream[Any],
    feed: InputFeed[Prompt],
    process: Callable[[int, Prompt], Any],
    concurrency: int,
    in_order: InOrder[Result] | None,
    admit: Callable[[], Awaitable[None] | None],
    governor: Governor | None,
    timings: Timings | None,
) -> None:
    async def deliver(index: int, result: Result) -> None:
        try:
            await send.send((index, result))
        except BaseException:
            state.unsent.append((index, result))  # finished, not handed out: a leftover
            raise

    with state.scope:
        async with send:
            try:
                await run_workers(
                    feed,
                    process,
                    deliver,
                    concurrency=concurrency,
                    admit=admit,
                    in_order=in_order,
                    governor=governor,
                    timings=timings,
                )
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                return  # the consumer went away
            except anyio.get_cancelled_exc_class():
                raise
            except Exception as exc:  # the input iterator failed, or the job cannot work
                state.failure = exc
                return
            await send.send(_DONE)


class BatchStream:
    """Results of :meth:`Synth.iter_batch`, as ``(index, result)``."""

    def __init__(
        self,
        tg: anyio.abc.TaskGroup,
        feed: InputFeed[Prompt],
        process: Callable[[int, Prompt], Any],
        concurrency: int,
        *,
        admit: Callable[[], Awaitable[None] | None],
        governor: Governor | None = None,
        ordered: bool = False,
        timings: Timings | None = None,
    ) -> None:
        send: MemoryObjectSendStream[Any]
        receive: MemoryObjectReceiveStream[Any]
        send, receive = anyio.create_memory_object_stream(max_buffer_size=concurrency)
        self._receive = receive
        self._state = _BatchState()
        self._finished = False
        self._unread: list[tuple[int, Result]] = []
        #: The last indices handed out: a result taken just as its sender was cancelled
        #: is both handed out and in ``unsent``; leftovers() must not repeat it.
        self._handed: deque[int] = deque(maxlen=4 * concurrency + 8)
        self._feed = feed
        self._in_order: InOrder[Result] | None = (
            InOrder(feed, lambda i, r: send.send((i, r)), window=4 * concurrency)
            if ordered
            else None
        )
        tg.start_soon(
            _run_batch,
            self._state,
            send,
            feed,
            process,
            concurrency,
            self._in_order,
            admit,
            governor,
            timings,
        )

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> tuple[int, Result]:
        if self._finished:
            raise StopAsyncIteration
        try:
            item = await self._receive.receive()
        except anyio.EndOfStream:
            # The producer ended without saying the batch was done.
            self._finished = True
            if self._state.failure is not None:
                raise self._state.failure from None
            raise SynthError(
                f"the batch stopped after {self._feed.count} of its inputs were started: "
                "its Synth was closed; read iter_batch() results inside `async with Synth(...)`"
            ) from None
        except anyio.ClosedResourceError:
            item = _DONE  # closed by our own aclose()
        if item is _DONE:
            self._finished = True
            raise StopAsyncIteration
        self._handed.append(item[0])
        return item  # type: ignore[no-any-return]

    def leftovers(self) -> list[tuple[int, Result]]:
        """After the batch was stopped early: results that had finished but were never
        handed out (waiting in the buffer, or held back in ``ordered=True`` mode until
        an earlier input finished), by input index, so an interrupted job can keep them."""
        held = [] if self._in_order is None else self._in_order.leftovers()
        by_index = dict(self._unread + self._state.unsent + held)  # one entry per index
        for index in self._handed:
            by_index.pop(index, None)
        return sorted(by_index.items())

    async def aclose(self) -> None:
        self._stop()

    def _stop(self) -> None:
        if not self._finished:
            self._finished = True
            while True:  # keep what finished but was not read yet: see leftovers()
                try:
                    item = self._receive.receive_nowait()
                except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                    break
                if item is not _DONE:
                    self._unread.append(item)
        self._state.scope.cancel()
        self._receive.close()

    def __del__(self) -> None:
        # Dropped without aclose (e.g. `break` in a plain async for): stop the workers.
        try:
            self._stop()
        except RuntimeError:  # the event loop is already gone: nothing left to stop
            pass

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
