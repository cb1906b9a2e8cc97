"""Live metrics of an engine, and the bottleneck analyzer that reads them."""

from typing import TYPE_CHECKING, Any

from ._analyzer import AnalysisReport, Bottleneck, BottleneckAnalyzer, Evidence
from ._histogram import LogHistogram
from ._metrics import Metrics, MetricsSnapshot

if TYPE_CHECKING:
    from ._otel import instrument_otel
    from ._prometheus import MetricsServer, prometheus_collector, serve_metrics

__all__ = [
    "AnalysisReport",
    "Bottleneck",
    "BottleneckAnalyzer",
    "Evidence",
    "LogHistogram",
    "Metrics",
    "MetricsServer",
    "MetricsSnapshot",
    "instrument_otel",
    "prometheus_collector",
    "serve_metrics",
]

#: Exporters load on first use: prometheus_client and opentelemetry stay out of
#: ``import agentic_synth``.
_LAZY = {
    "MetricsServer": "._prometheus",
    "instrument_otel": "._otel",
    "prometheus_collector": "._prometheus",
    "serve_metrics": "._prometheus",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
