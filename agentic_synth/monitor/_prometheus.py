"""Prometheus exposition of a Synth's metrics, read at scrape time.

Nothing is added to the request path: a custom collector turns the engine's
:class:`~agentic_synth.monitor.Metrics` into metric families when Prometheus
scrapes. Names carry a ``synth_`` prefix and base units (seconds, bytes, USD);
latencies are histograms (not summaries), so they aggregate across processes.

Histograms are rebuilt from the engine's log buckets (1% wide) at each scrape. A
log bucket counts at the first Prometheus bound at or above its upper edge, so a
cumulative count at ``le=b`` never includes a value above ``b`` and may miss values
up to 1% below it (those land in the next bucket): bounds are exact to within 1%.

Thread safety: a scrape may run on any thread (:func:`serve_metrics` answers from
its own, so a scrape works even while the event loop is busy) while the loop keeps
recording. The collector never calls ``Metrics.snapshot()`` (its probes belong to
the loop); it reads plain attributes, which are atomic under the GIL, and copies
the dicts the loop may grow (new histogram buckets, error classes, models) before
walking them, retrying a copy that raced a resize. Families read at slightly
different instants may disagree by the requests finishing meanwhile; each
histogram is self-consistent (its ``+Inf`` bucket is its ``_count``).
"""

from __future__ import annotations

import socket
import socketserver
import threading
from bisect import bisect_left
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import anyio.to_thread
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer, make_wsgi_app
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from ._histogram import _GROWTH, _MIN_VALUE, LogHistogram
from ._metrics import Metrics, _rss

if TYPE_CHECKING:
    from .._synth import Synth

__all__ = [
    "LATENCY_BUCKETS",
    "LOOP_LAG_BUCKETS",
    "TOKEN_TIME_BUCKETS",
    "MetricsServer",
    "prometheus_collector",
    "serve_metrics",
]

#: End-to-end request latency (s): from a cached short answer (10 ms) to a long
#: reasoning answer (10 min), about 2.5x apart.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 60, 120, 300, 600,
)  # fmt: skip
#: TTFT, TPOT and ITL (s): a decode step takes milliseconds, a queued prefill seconds.
TOKEN_TIME_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
)  # fmt: skip
#: Event-loop lag (s): a healthy loop wakes its probe well under a millisecond late.
LOOP_LAG_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
)  # fmt: skip

_COPY_TRIES = 8
#: How often the idle server thread checks whether it was closed (close() waits as long).
_POLL_SECONDS = 0.1
_K = TypeVar("_K")
_V = TypeVar("_V")


def _copy(mapping: Mapping[_K, _V]) -> dict[_K, _V]:
    """A copy of a dict the event loop may be adding keys to meanwhile."""
    for _ in range(_COPY_TRIES - 1):
        try:
            return dict(mapping)
        except RuntimeError:  # "dictionary changed size during iteration": try again
            pass
    return dict(mapping)


def _buckets(hist: LogHistogram, bounds: tuple[float, ...]) -> list[tuple[str, float]]:
    """Cumulative counts at ``bounds`` and ``+Inf`` from the log buckets: each log
    bucket counts at the first bound >= its upper edge (bound error <= 1%)."""
    counts = [0] * (len(bounds) + 1)
    for index, n in _copy(hist._buckets).items():
        upper = _MIN_VALUE * _GROWTH**index  # bucket 0 holds everything <= _MIN_VALUE
        counts[bisect_left(bounds, upper)] += n
    out: list[tuple[str, float]] = []
    total = 0
    for bound, n in zip((*map(floatToGoString, bounds), "+Inf"), counts, strict=True):
        total += n
        out.append((bound, total))
    return out


def _histogram(
    name: str, doc: str, hist: LogHistogram, bounds: tuple[float, ...]
) -> HistogramMetricFamily:
    return HistogramMetricFamily(
        name, doc, buckets=_buckets(hist, bounds), sum_value=hist.total, unit="seconds"
    )


def _counter(name: str, doc: str, value: float, unit: str = "") -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value, unit=unit)


def _gauge(name: str, doc: str, value: float, unit: str = "") -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value, unit=unit)


class SynthCollector(Collector):
    """Metric families of one engine's :class:`Metrics`, built at each scrape."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    @staticmethod
    def _budget(account: dict[str, Any]) -> Iterator[Metric]:
        budget = GaugeMetricFamily(
            "synth_budget_usd",
            "The budget: its limit, what was spent in its period (every process, with "
            "calls lost in flight), of that the uncertain part, and what is reserved now.",
            labels=["kind"],
        )
        for kind, key in (
            ("limit", "limit_usd"),
            ("spent", "spent_usd"),
            ("uncertain", "uncertain_usd"),
            ("reserved", "reserved_usd"),
        ):
            budget.add_metric([kind], float(account[key]))
        yield budget
        yield _gauge(
            "synth_budget_exhausted",
            "1 once a request did not fit: nothing more is sent.",
            float(account["exhausted"]),
        )

    def collect(self) -> Iterator[Metric]:
        m = self._metrics
        requests = CounterMetricFamily(
            "synth_requests", "Requests finished, by outcome.", labels=["outcome"]
        )
        requests.add_metric(["succeeded"], m.succeeded)
        requests.add_metric(["failed"], m.failed)
        requests.add_metric(["cancelled"], m.cancelled)
        yield requests
        errors = CounterMetricFamily(
            "synth_errors",
            "Failed requests by the class of their final error.",
            labels=["error_class"],
        )
        for error_class, n in sorted(_copy(m.errors_by_class).items()):
            errors.add_metric([error_class], n)
        yield errors
        yield _counter(
            "synth_attempts", "Provider calls, retries and fallbacks included.", m.attempts
        )
        yield _counter("synth_retries", "Attempts after the first of a request.", m.retries)
        yield _counter("synth_fallbacks", "Requests handed to a later model.", m.fallbacks)
        yield _counter(
            "synth_breaker_rejections",
            "Times a model was skipped, its breaker open.",
            m.breaker_rejections,
        )
        tokens = CounterMetricFamily(
            "synth_tokens", "Tokens of successful attempts.", labels=["type"]
        )
        tokens.add_metric(["input"], m.input_tokens)
        tokens.add_metric(["output"], m.output_tokens)
        yield tokens
        yield _counter("synth_cost_usd", "Estimated spend from the models' prices.", m.cost_usd)
        yield _counter(
            "synth_unpriced_calls",
            "Successful calls of models without a known price (not in synth_cost_usd).",
            m.unpriced_calls,
        )
        if m.budget_probe is not None:
            yield from self._budget(m.budget_probe())
        yield _histogram(
            "synth_request_duration_seconds",
            "End-to-end latency of successful requests (retries and waits included).",
            m.latency,
            LATENCY_BUCKETS,
        )
        yield _histogram(
            "synth_time_to_first_token_seconds",
            "Time to the first non-empty text chunk of a stream.",
            m.ttft,
            TOKEN_TIME_BUCKETS,
        )
        yield _histogram(
            "synth_time_per_output_token_seconds",
            "(latency - TTFT) / (output tokens - 1), streams of 2+ output tokens.",
            m.tpot,
            TOKEN_TIME_BUCKETS,
        )
        yield _histogram(
            "synth_inter_token_latency_seconds",
            "Gap between consecutive text chunks of a stream.",
            m.itl,
            TOKEN_TIME_BUCKETS,
        )
        yield _gauge("synth_in_flight", "Requests started and not finished.", m.in_flight)
        if m.concurrency_cap is not None:
            yield _gauge("synth_concurrency_cap", "Requests allowed in flight.", m.concurrency_cap)
        dedup = CounterMetricFamily(
            "synth_dedup", "Near-duplicate handling, by what was done.", labels=["action"]
        )
        dedup.add_metric(["prompt_skipped"], m.dedup_prompts_skipped)
        dedup.add_metric(["prompt_resent"], m.dedup_prompts_resent)
        dedup.add_metric(["output_flagged"], m.dedup_outputs_flagged)
        dedup.add_metric(["output_dropped"], m.dedup_outputs_dropped)
        yield dedup
        if m.detailed:
            yield from self._detailed(m)
        if m.slo:
            yield from self._goodput(m)
        yield from self._models(m)
        yield from self._process(m)
        if m.cache_probe is not None:
            yield from self._cache(m.cache_probe())
        if m.memory_probe is not None:
            yield from self._memory(m.memory_probe())

    @staticmethod
    def _detailed(m: Metrics) -> Iterator[Metric]:
        stages = CounterMetricFamily(
            "synth_stage_seconds",
            "Seconds requests spent per stage, summed over requests.",
            labels=["stage"],
            unit="seconds",
        )
        for stage, seconds in _copy(m.waits).items():
            stages.add_metric([stage], seconds)
        yield stages
        if m.concurrency_cap is not None:
            yield _counter(
                "synth_at_cap_seconds",
                "Seconds with every concurrency slot taken (up to the last change).",
                m._at_cap,
                unit="seconds",
            )

    @staticmethod
    def _goodput(m: Metrics) -> Iterator[Metric]:
        yield _counter(
            "synth_goodput_requests",
            "Successful requests that met every SLO; rate() of it is the goodput.",
            m.good,
        )
        slo = GaugeMetricFamily(
            "synth_slo_seconds",
            "The SLOs requests are judged by.",
            labels=["objective"],
            unit="seconds",
        )
        for objective, seconds in _copy(m.slo).items():
            slo.add_metric([objective], seconds)
        yield slo

    @staticmethod
    def _models(m: Metrics) -> Iterator[Metric]:
        attempts = CounterMetricFamily(
            "synth_model_attempts", "Provider calls per model.", labels=["model"]
        )
        errors = CounterMetricFamily(
            "synth_model_errors",
            "Failed calls per model and error class.",
            labels=["model", "error_class"],
        )
        tokens = CounterMetricFamily(
            "synth_model_tokens", "Tokens per model.", labels=["model", "type"]
        )
        duration = HistogramMetricFamily(
            "synth_model_attempt_duration_seconds",
            "Latency of one successful provider call, per model.",
            labels=["model"],
            unit="seconds",
        )
        for model, stats in sorted(_copy(m._models).items()):
            attempts.add_metric([model], stats.attempts)
            for error_class, n in sorted(_copy(stats.errors).items()):
                errors.add_metric([model, error_class], n)
            tokens.add_metric([model, "input"], stats.input_tokens)
            tokens.add_metric([model, "output"], stats.output_tokens)
            duration.add_metric(
                [model], _buckets(stats.latency, LATENCY_BUCKETS), stats.latency.total
            )
        yield from (attempts, errors, tokens, duration)

    @staticmethod
    def _process(m: Metrics) -> Iterator[Metric]:
        if m.loop_lag.count:
            yield _histogram(
                "synth_event_loop_lag_seconds",
                "How late the event loop woke a 0.25 s sleeper.",
                m.loop_lag,
                LOOP_LAG_BUCKETS,
            )
        if m.cpu_fraction is not None:
            yield _gauge(
                "synth_process_cpu_ratio",
                "CPU seconds per wall second over the last 10 s (1 = one core busy).",
                m.cpu_fraction,
            )
        rss, peak = _rss()
        if rss is not None:
            yield _gauge("synth_process_resident_memory_bytes", "Resident memory.", rss)
        if peak is not None:
            yield _gauge("synth_process_peak_resident_memory_bytes", "Peak resident memory.", peak)

    @staticmethod
    def _cache(cache: Mapping[str, Any]) -> Iterator[Metric]:
        yield _counter("synth_cache_hits", "Answers served by the response cache.", cache["hits"])
        yield _counter("synth_cache_misses", "Lookups the cache could not answer.", cache["misses"])
        yield _counter("synth_cache_stores", "Answers stored in the cache.", cache["stores"])

    @staticmethod
    def _memory(memory: Mapping[str, Any]) -> Iterator[Metric]:
        yield _gauge("synth_memory_limit_bytes", "The memory governor's limit.", memory["limit"])
        yield _gauge(
            "synth_memory_pressure", "Resident memory / the limit (0..1+).", memory["pressure"]
        )
        yield _counter(
            "synth_memory_evictions", "Cache entries evicted under pressure.", memory["evictions"]
        )
        yield _counter(
            "synth_memory_backpressure_seconds",
            "Seconds input was held back under pressure.",
            memory["backpressure_seconds"],
            unit="seconds",
        )


def prometheus_collector(synth: Synth) -> Collector:
    """A collector of ``synth``'s metrics for a ``prometheus_client`` registry (read at
    scrape time, from any thread)."""
    return SynthCollector(synth._metrics)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not worth a line on stderr each."""


class _Server(ThreadingWSGIServer):
    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host up in DNS (getfqdn): with no network
        # that can hang; the WSGI environ needs no more than the address itself.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)
        self.setup_environ()


class MetricsServer:
    """``/metrics`` of one engine on a background thread; :meth:`close` stops it.

    Use it as a context manager (``with`` or ``async with``), or call :meth:`close`.
    """

    def __init__(self, registry: CollectorRegistry, port: int, host: str = "127.0.0.1") -> None:
        family, sockaddr = _address(host, port)
        server_class = type("_Server", (_Server,), {"address_family": family})
        self._httpd: WSGIServer = make_server(
            sockaddr[0], sockaddr[1], make_wsgi_app(registry), server_class, _QuietHandler
        )
        self.host = host
        self.port: int = self._httpd.server_address[1]
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="synth-metrics", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self._httpd.serve_forever(poll_interval=_POLL_SECONDS)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop answering and free the port (waits for the serving thread)."""
        if self._closed:
            return
        self._closed = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # close() waits up to one poll interval for the thread: not on the event loop
        await anyio.to_thread.run_sync(self.close)


def _address(host: str, port: int) -> tuple[socket.AddressFamily, tuple[Any, ...]]:
    """The family and address to bind ``host`` (a name or an IPv4/IPv6 address)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


def serve_metrics(synth: Synth, port: int, host: str = "127.0.0.1") -> MetricsServer:
    """Serve ``synth``'s metrics as Prometheus text on ``http://host:port/metrics``
    from a daemon thread, until the returned server is closed.

    Binds at once: a port in use raises :class:`OSError` here (``port=0`` picks a
    free one: see ``.port``). Loopback by default; the registry is the server's own
    (never ``prometheus_client``'s global one), so two engines can be served side
    by side. Scrapes read the metrics live, before, during and after the Synth's
    ``async with`` block.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(prometheus_collector(synth))
    return MetricsServer(registry, port, host)
