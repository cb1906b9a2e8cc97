"""Time series: computed locally under a seed, or as a skeleton whose points a model annotates.

The grid. Point ``i`` is at ``start + i * interval`` for ``i`` in ``0 .. count-1``:
the series covers the half-open range ``[start, end)`` with ``end = start + count *
interval``. Any of these determine it (a conflicting set is an error naming the
numbers, never a silent choice):

- ``start`` and ``count`` (``interval`` defaults to 1h): ``end`` follows;
- ``start`` and ``end``: ``count`` is the number of grid points in ``[start, end)``;
- ``start``, ``end`` and ``count`` without ``interval``: evenly spread,
  ``interval = (end - start) / count`` (floored to whole microseconds);
- ``end`` and ``count``: the ``count`` points just before ``end``;
- all four: accepted only when ``end`` holds exactly ``count`` points.

Timestamps are UTC ISO 8601 (``2026-01-01T00:00:00Z``; ``.ffffff`` is added to every
point when the grid is not on whole seconds), strictly increasing, computed from the
grid and never taken from anywhere else (the seed package let a record's own
``timestamp`` overwrite the computed one).

The values. Each metric has a ``base`` (default 100) and a ``scale`` (default
``|base|``, or 1 when the base is 0) in which every effect is measured:
``value = base + trend + seasonal + noise``, rounded to ``decimals`` (default 2, as
the seed) and clipped to ``[min, max]``:

- trend ``"up"``/``"down"``: a straight line from ``base`` moving by
  ``TREND_SPAN * scale`` (half a scale) over the whole series, so the sign of the
  fitted slope is the trend's whatever the length; ``"stable"``: none;
  ``"random"``: a Gaussian random walk from ``base`` whose end point has standard
  deviation ``TREND_SPAN * scale`` (each metric wanders on its own);
- seasonality: ``-amplitude * scale * cos(2 pi phase)``, with ``amplitude``
  ``SEASONAL_AMPLITUDE`` for ``True`` (or the float given), ``phase`` the time since
  Monday 1970-01-05T00:00Z modulo ``period``: a daily cycle is lowest at 00:00 UTC
  and highest at 12:00 UTC, a weekly one lowest at Monday 00:00. The default
  ``period`` is the first of 1 day, 1 week, 365 days that spans more than two
  intervals (hourly data cycles daily, daily data weekly);
- noise: Gaussian, standard deviation ``noise * scale`` (the seed drew uniform
  noise of half-width ``noise * base``; Gaussian makes ``noise`` the residual
  standard deviation, which is what a user can check).

Every metric draws from its own stream derived from the seed, so adding a metric
leaves the others' values unchanged. Metrics are names (``["cpu", "memory"]``) or
dicts (``{"name": "cpu", "base": 40, "scale": 20, "min": 0, "max": 100}``).

Division of labour for ``mode="llm"``: :func:`timeseries_skeleton` computes the
points exactly as ``mode="local"`` does (a model is bad at arithmetic and worse at
spacing timestamps); the model writes only each point's ``annotation`` (the content
schema), :meth:`Skeleton.fill` merges it without letting it touch a timestamp or a
value, and :func:`check_timeseries` checks the merged records.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from .._exceptions import InvalidRequestError
from ._skeleton import (
    Problems,
    Seed,
    Skeleton,
    TimeLike,
    format_utc,
    is_number,
    parse_duration,
    parse_utc_timestamp,
    resolve_seed,
    standard_normal,
    stream,
    to_microseconds,
    to_utc,
)

__all__ = [
    "SEASONAL_AMPLITUDE",
    "TIMESERIES_CONTENT_SCHEMA",
    "TREND_SPAN",
    "Metric",
    "TimeSeriesPlan",
    "Trend",
    "check_timeseries",
    "generate_timeseries_local",
    "iter_timeseries_local",
    "plan_timeseries",
    "timeseries_skeleton",
]

Trend = Literal["up", "down", "stable", "random"]
MetricSpec = str | Mapping[str, Any]

TREND_SPAN = 0.5
SEASONAL_AMPLITUDE = 0.2
DEFAULT_INTERVAL = timedelta(hours=1)
SEASON_REFERENCE = datetime(1970, 1, 5)  # a Monday, 00:00 UTC
_PERIODS = (timedelta(days=1), timedelta(weeks=1), timedelta(days=365))
_TRENDS = ("up", "down", "stable", "random")
_METRIC_KEYS = frozenset({"name", "base", "scale", "min", "max", "decimals"})
_US = timedelta(microseconds=1)
_SECOND = timedelta(seconds=1)

TIMESERIES_CONTENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "annotation": {
            "type": "string",
            "minLength": 1,
            "maxLength": 500,
            "description": "What is happening at this point and why the values look as they do.",
        }
    },
    "required": ["annotation"],
    "additionalProperties": False,
}


@dataclass(frozen=True, slots=True)
class Metric:
    """One column of the series; effects are measured in ``scale`` (see the module doc)."""

    name: str
    base: float = 100.0
    scale: float = 100.0
    min: float | None = None
    max: float | None = None
    decimals: int | None = 2


@dataclass(frozen=True, slots=True)
class TimeSeriesPlan:
    """The validated arguments: what the series will be before a value is drawn."""

    count: int
    start: datetime
    interval: timedelta
    metrics: tuple[Metric, ...]
    trend: Trend
    amplitude: float
    period: timedelta | None
    noise: float
    seed: int | str

    @property
    def end(self) -> datetime:
        """The exclusive end of the range: one interval after the last point."""
        return self.start + self.count * self.interval

    @property
    def micro(self) -> bool:
        """Timestamps carry microseconds when the grid is not on whole seconds."""
        return self.start.microsecond != 0 or self.interval % _SECOND != timedelta(0)


def _metric(spec: MetricSpec) -> Metric:
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, Mapping):
        raise InvalidRequestError(f"a metric is a name or a dict, got {spec!r}")
    unknown = set(spec) - _METRIC_KEYS
    if unknown:
        raise InvalidRequestError(
            f"metric {spec.get('name')!r}: unknown keys {sorted(unknown)} "
            f"(known: {sorted(_METRIC_KEYS)})"
        )
    name = spec.get("name")
    if not isinstance(name, str) or not name or name == "timestamp":
        raise InvalidRequestError(
            f"metric name must be a non-empty str other than 'timestamp': {name!r}"
        )
    numbers: dict[str, float | None] = {}
    for key in ("base", "scale", "min", "max"):
        value = spec.get(key)
        if value is not None and not is_number(value):
            raise InvalidRequestError(
                f"metric {name!r}: {key} must be a finite number, got {value!r}"
            )
        numbers[key] = None if value is None else float(value)
    base = 100.0 if numbers["base"] is None else numbers["base"]
    scale = numbers["scale"]
    if scale is None:
        scale = abs(base) or 1.0
    if scale <= 0:
        raise InvalidRequestError(f"metric {name!r}: scale must be positive, got {scale}")
    lo, hi = numbers["min"], numbers["max"]
    if lo is not None and hi is not None and lo >= hi:
        raise InvalidRequestError(f"metric {name!r}: min {lo} must be below max {hi}")
    if (lo is not None and base < lo) or (hi is not None and base > hi):
        raise InvalidRequestError(f"metric {name!r}: base {base} lies outside [min, max]")
    decimals = spec.get("decimals", 2)
    if decimals is not None and (isinstance(decimals, bool) or not isinstance(decimals, int)):
        raise InvalidRequestError(f"metric {name!r}: decimals must be an int or None")
    return Metric(name, base, scale, lo, hi, decimals)


def _grid(
    count: int | None,
    start: TimeLike | None,
    end: TimeLike | None,
    interval: str | timedelta | None,
) -> tuple[int, datetime, timedelta]:
    """``(count, start, interval)`` from any determining subset (rules in the module doc)."""
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
        raise InvalidRequestError(f"count must be an int >= 0, got {count!r}")
    s = None if start is None else to_utc(start, "start")
    e = None if end is None else to_utc(end, "end")
    step = None if interval is None else parse_duration(interval, "interval")
    if s is not None and e is not None and e <= s:
        raise InvalidRequestError(
            f"end {format_utc(e, True)} must be after start {format_utc(s, True)}"
        )
    if step is None:
        if s is not None and e is not None and count is not None:
            if count == 0:
                raise InvalidRequestError("count=0 points cannot spread over [start, end)")
            step = (e - s) // count
            if step < _US:
                raise InvalidRequestError(
                    f"[start, end) is too short for {count} points one microsecond apart"
                )
            return count, s, step
        step = DEFAULT_INTERVAL
    if s is None:
        if e is None or count is None:
            raise InvalidRequestError("give start (with count or end), or end with count")
        try:
            return count, e - count * step, step
        except OverflowError:
            raise InvalidRequestError("count * interval before end is out of range") from None
    if e is None:
        if count is None:
            raise InvalidRequestError("give count or end with start")
        return count, s, step
    whole, rest = divmod(e - s, step)
    fits = whole + (rest > timedelta(0))
    if count is not None and count != fits:
        raise InvalidRequestError(
            f"[start, end) holds {fits} points at interval {step}, but count={count}: "
            "give two of count, end and interval"
        )
    return fits, s, step


def plan_timeseries(
    count: int | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    interval: str | timedelta | None = None,
    metrics: Sequence[MetricSpec] | str = ("value",),
    trend: Trend = "stable",
    seasonality: bool | float = True,
    noise: float = 0.1,
    *,
    period: str | timedelta | None = None,
    seed: Seed = None,
) -> TimeSeriesPlan:
    """Validate the arguments of :func:`generate_timeseries_local` all at once (a
    lazy generator must fail at the call, not at the first ``next``)."""
    n, s, step = _grid(count, start, end, interval)
    try:
        s + n * step
    except OverflowError:
        raise InvalidRequestError("the series runs past the last representable time") from None
    specs = [metrics] if isinstance(metrics, str) else list(metrics)
    parsed = tuple(_metric(m) for m in specs)
    if not parsed:
        raise InvalidRequestError("give at least one metric")
    if len({m.name for m in parsed}) != len(parsed):
        raise InvalidRequestError(f"metric names repeat: {[m.name for m in parsed]}")
    if trend not in _TRENDS:
        raise InvalidRequestError(f"trend must be one of {_TRENDS}, got {trend!r}")
    if not is_number(noise) or noise < 0:
        raise InvalidRequestError(f"noise must be a finite number >= 0, got {noise!r}")
    if isinstance(seasonality, bool):
        amplitude = SEASONAL_AMPLITUDE if seasonality else 0.0
    elif is_number(seasonality) and seasonality >= 0:
        amplitude = float(seasonality)
    else:
        raise InvalidRequestError(
            f"seasonality must be a bool or an amplitude >= 0, got {seasonality!r}"
        )
    cycle: timedelta | None = None
    if period is not None:
        if not amplitude:
            raise InvalidRequestError("period given but seasonality is off")
        cycle = parse_duration(period, "period")
        if cycle <= 2 * step:
            raise InvalidRequestError(
                f"period {cycle} must span more than two intervals ({step}) to be seen"
            )
    elif amplitude:
        cycle = next((p for p in _PERIODS if p > 2 * step), None)
        if cycle is None:
            raise InvalidRequestError(
                f"interval {step} is too long for a seasonal cycle: pass seasonality=False"
            )
    return TimeSeriesPlan(
        n, s, step, parsed, trend, amplitude, cycle, float(noise), resolve_seed(seed)
    )


def _points(plan: TimeSeriesPlan) -> Iterator[dict[str, Any]]:
    n = plan.count
    spec = "microseconds" if plan.micro else "seconds"
    span = TREND_SPAN if plan.trend == "up" else -TREND_SPAN if plan.trend == "down" else 0.0
    walking = plan.trend == "random"
    denominator = max(n - 1, 1)
    # per metric, mutable: [name, level, slope per point, seasonal amplitude, noise sd,
    # noise sampler, walk step sd, walk sampler, min, max, decimals]
    columns: list[list[Any]] = [
        [
            m.name,
            m.base,
            span * m.scale / denominator,
            plan.amplitude * m.scale,
            plan.noise * m.scale,
            standard_normal(stream(plan.seed, f"noise:{m.name}")),
            TREND_SPAN * m.scale / math.sqrt(denominator),
            standard_normal(stream(plan.seed, f"walk:{m.name}")),
            -math.inf if m.min is None else m.min,
            math.inf if m.max is None else m.max,
            m.decimals,
        ]
        for m in plan.metrics
    ]
    cycle_us = 0 if plan.period is None else plan.period // _US
    if cycle_us:
        phase = (to_microseconds(plan.start) - to_microseconds(SEASON_REFERENCE)) % cycle_us
        advance = (plan.interval // _US) % cycle_us
        turn = 2 * math.pi / cycle_us
    when = plan.start
    step = plan.interval
    cos = math.cos
    season = 0.0
    for i in range(n):
        record: dict[str, Any] = {"timestamp": when.isoformat(timespec=spec) + "Z"}
        if cycle_us:
            season = -cos(turn * phase)
            phase = (phase + advance) % cycle_us
        for column in columns:
            name, level, slope, amp, sd, normal, walk_sd, walk, lo, hi, dec = column
            if walking:
                if i:
                    level += walk_sd * walk()
                    column[1] = level
                value = level
            else:
                value = level + slope * i
            if amp:
                value += amp * season
            if sd:
                value += sd * normal()
            if dec is not None:
                value = round(value, dec)
            # clipped after rounding: a bound off the decimals grid is still never crossed
            record[name] = lo if value < lo else hi if value > hi else value
        yield record
        when += step


def iter_timeseries_local(
    count: int | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    interval: str | timedelta | None = None,
    metrics: Sequence[MetricSpec] | str = ("value",),
    trend: Trend = "stable",
    seasonality: bool | float = True,
    noise: float = 0.1,
    *,
    period: str | timedelta | None = None,
    seed: Seed = None,
) -> Iterator[dict[str, Any]]:
    """The points one at a time (constant memory); arguments are checked at the call."""
    return _points(
        plan_timeseries(
            count,
            start,
            end,
            interval,
            metrics,
            trend,
            seasonality,
            noise,
            period=period,
            seed=seed,
        )
    )


def generate_timeseries_local(
    count: int | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    interval: str | timedelta | None = None,
    metrics: Sequence[MetricSpec] | str = ("value",),
    trend: Trend = "stable",
    seasonality: bool | float = True,
    noise: float = 0.1,
    *,
    period: str | timedelta | None = None,
    seed: Seed = None,
) -> list[dict[str, Any]]:
    """``{"timestamp": ..., <metric>: value, ...}`` per point, deterministic under ``seed``."""
    return list(
        iter_timeseries_local(
            count,
            start,
            end,
            interval,
            metrics,
            trend,
            seasonality,
            noise,
            period=period,
            seed=seed,
        )
    )


def _content_schema(schema: Mapping[str, Any] | None, sampled: set[str]) -> dict[str, Any]:
    if schema is None:
        return dict(TIMESERIES_CONTENT_SCHEMA)
    if schema.get("type") != "object" or not isinstance(schema.get("properties"), Mapping):
        raise InvalidRequestError("content_schema must be an object schema with properties")
    clash = sampled & set(schema["properties"])
    if clash:
        raise InvalidRequestError(f"content_schema may not define sampled fields {sorted(clash)}")
    return dict(schema)


def timeseries_skeleton(
    count: int | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    interval: str | timedelta | None = None,
    metrics: Sequence[MetricSpec] | str = ("value",),
    trend: Trend = "stable",
    seasonality: bool | float = True,
    noise: float = 0.1,
    *,
    period: str | timedelta | None = None,
    seed: Seed = None,
    content_schema: Mapping[str, Any] | None = None,
) -> Skeleton:
    """The local points, and the schema of what a model writes per point
    (:data:`TIMESERIES_CONTENT_SCHEMA` unless ``content_schema`` is given)."""
    plan = plan_timeseries(
        count, start, end, interval, metrics, trend, seasonality, noise, period=period, seed=seed
    )
    sampled = {"timestamp", *(m.name for m in plan.metrics)}
    return Skeleton(list(_points(plan)), _content_schema(content_schema, sampled))


def check_timeseries(
    records: Sequence[Mapping[str, Any]],
    *,
    count: int | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    interval: str | timedelta | None = None,
    metrics: Sequence[MetricSpec] | str | None = None,
    limit: int = 100,
) -> list[str]:
    """Problems with ``records`` as a time series (empty when none): exact count, UTC
    ISO 8601 timestamps, strictly increasing, evenly spaced (at ``interval`` when
    given), inside ``[start, end)``, every metric a finite number within its bounds."""
    problems = Problems(limit)
    if count is not None and len(records) != count:
        problems.add(f"{len(records)} records, expected exactly {count}")
    lo = None if start is None else to_utc(start, "start")
    hi = None if end is None else to_utc(end, "end")
    step = None if interval is None else parse_duration(interval, "interval")
    specs = None
    if metrics is not None:
        specs = [_metric(m) for m in ([metrics] if isinstance(metrics, str) else metrics)]
    previous: datetime | None = None
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            problems.add(f"record {i}: not an object")
            previous = None
            continue
        when, why = parse_utc_timestamp(record.get("timestamp"))
        if when is None:
            problems.add(f"record {i}: {why}")
        else:
            if lo is not None and when < lo:
                problems.add(f"record {i}: {record['timestamp']} is before start")
            if hi is not None and when >= hi:
                problems.add(f"record {i}: {record['timestamp']} is not before end")
            if previous is not None:
                gap = when - previous
                if gap <= timedelta(0):
                    problems.add(
                        f"record {i}: {record['timestamp']} does not follow record {i - 1}"
                    )
                elif step is None:
                    step = gap  # no interval given: every gap must equal the first
                elif gap != step:
                    problems.add(f"record {i}: {gap} after record {i - 1}, expected {step}")
        previous = when
        for m in specs or ():
            value = record.get(m.name)
            if not is_number(value):
                problems.add(f"record {i}: {m.name}={value!r} is not a finite number")
                continue
            number = cast(float, value)
            if (m.min is not None and number < m.min) or (m.max is not None and number > m.max):
                problems.add(f"record {i}: {m.name}={value} outside [{m.min}, {m.max}]")
    return problems.result()
