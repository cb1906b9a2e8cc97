"""Live metrics of an engine (the bottleneck analyzer of a later stage reads these)."""

from ._histogram import LogHistogram
from ._metrics import Metrics, MetricsSnapshot

__all__ = ["LogHistogram", "Metrics", "MetricsSnapshot"]
