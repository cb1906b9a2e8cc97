"""The ``synth bench --check`` gate: absolute thresholds, and regressions against a
stored baseline that a noisy shared CI machine does not trip.

A benchmark is run ``repeats`` times; each figure is a list of per-repeat samples.

Absolute thresholds are checked on the median of the repeats. A figure a threshold
names but the run did not measure (absent, ``None`` or NaN) fails: a gate that
passes because nothing was measured is no gate.

A regression against the baseline needs both, because either alone cries wolf:

- a one-sided Mann-Whitney U test (current worse than baseline) significant at
  ``alpha``: ranks, so one slow repeat on a busy machine moves it little, and no
  assumption of normal noise; and
- the medians differing by at least ``min_effect`` (relative) in the bad direction:
  with enough repeats a 1% drift is "significant", but not worth a red build.

With 5 vs 5 repeats the smallest one-sided p-value is 1/252 = 0.004, so at the
default ``alpha = 0.01`` a regression needs nearly every current repeat to be worse
than nearly every baseline one (U <= 1). Fewer repeats than that can never reach
``alpha``; :func:`load_thresholds` refuses such a file.

Confirmation: when a regression is suspected and ``confirm`` is on, ``measure()``
runs once more and a figure fails only if the rerun's samples *alone* show the same
regression against the baseline (same test, same ``alpha`` and ``min_effect``).
Pooling the two runs was rejected: the pooled samples contain the suspicious ones,
so a burst of load during the first run (the usual cause on a shared runner) would
still fail the build. Two independent runs agreeing cost a real regression little
power (a real shift shows in both) and cut false alarms tenfold. Simulated, three
figures with 8% noise (normal), 5 repeats against a fresh 5-repeat baseline, 20,000
runs: 2.2% are suspected, 0.29% fail after the rerun (not 0.05%: both runs face the
same baseline, and a baseline drawn on the lucky side makes both look worse). A
10-repeat baseline lowers that to 0.16% and raises the power to catch a 10%
regression under 5% noise from 73% to 95%: record baselines with twice the repeats.

Prefer figures that do not depend on the machine's speed (CPU per request on the
simulator, ratios to a reference measured in the same run): a baseline written on
another machine says little about throughput or latency.

The thresholds file (``--check``), TOML; every table and key is optional::

    [thresholds]              # absent: the defaults below (synth bench keeps those on
                              # figures its suites measure); empty: no absolute limits
    latency_p99 = "< 1.0"     # seconds; the figure's own unit
    throughput = "> 10"       # requests per second
    peak_rss_mb = "< 400"
    cache_hit_rate = "> 50%"  # fractions take 0..1 or a percentage
    error_rate = "< 0.01"
    ttft_p99 = ["> 0", "< 2"] # several conditions on one figure

    [regression]
    alpha = 0.01              # significance of the one-sided U test
    min_effect = 0.05         # relative change of the medians that counts
    repeats = 5               # samples per figure (the bench reads this)
    confirm = true            # rerun before failing
    figures = ["cpu_us_per_request", "throughput"]   # default: all in the baseline

    [regression.directions]   # for figures whose name says nothing
    my_ratio = "higher"       # "lower" or "higher": which is better

Which way is better: ``directions`` first, then the name (lower for names with
latency, cpu, error, rss, memory, ttft, tpot or itl as a word; higher for throughput,
goodput and hit rates), then a threshold's operator (``<``: lower is better).

The baseline file (``--baseline``), JSON, written by :func:`save_baseline`::

    {"schema": "agentic-synth/bench-baseline/1", "created": "2025-01-01T00:00:00+00:00",
     "environment": {"python": "3.12.3", "cpu_count": 8, ...},
     "figures": {"throughput": [5210.4, 5188.0, ...], "cpu_us_per_request": [...]}}
"""

from __future__ import annotations

import datetime
import json
import math
import operator
import os
import platform
import re
import statistics
import tempfile
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any, Literal, TypeAlias, cast

from .._config import toml_shown
from .._exceptions import ConfigurationError

__all__ = [
    "BASELINE_SCHEMA",
    "DEFAULT_THRESHOLDS",
    "Baseline",
    "Better",
    "Comparison",
    "Finding",
    "GateReport",
    "Samples",
    "Threshold",
    "Thresholds",
    "check_thresholds",
    "compare",
    "figure_direction",
    "format_figure",
    "gate",
    "load_baseline",
    "load_thresholds",
    "machine_environment",
    "mann_whitney_u",
    "min_repeats",
    "parse_thresholds",
    "save_baseline",
    "smallest_p_value",
]

Op: TypeAlias = Literal["<", "<=", ">", ">="]
#: Which way a figure is better.
Better: TypeAlias = Literal["lower", "higher"]
Alternative: TypeAlias = Literal["two-sided", "less", "greater"]
Method: TypeAlias = Literal["auto", "exact", "asymptotic"]
Kind: TypeAlias = Literal["threshold", "regression", "missing"]
#: Per-repeat samples of each figure; ``None`` or NaN: not measured in that repeat.
Samples: TypeAlias = Mapping[str, Sequence[float | None]]

BASELINE_SCHEMA = "agentic-synth/bench-baseline/1"

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_BETTER = ("lower", "higher")


# -- figures: direction and units ------------------------------------------------------

_LOWER_WORDS = ("latenc", "cpu", "error", "rss", "memory", "ttft", "tpot", "itl")
_HIGHER_WORDS = ("throughput", "goodput")
_WORD_RE = re.compile(r"[a-z0-9]+")


def figure_direction(figure: str, directions: Mapping[str, Better] | None = None) -> Better | None:
    """Which way ``figure`` is better: from ``directions``, else from its name; None
    when neither says (or the name says both)."""
    if directions is not None and figure in directions:
        return directions[figure]
    name = figure.lower()
    words = _WORD_RE.findall(name)
    lower = any(w.startswith(_LOWER_WORDS) for w in words)
    higher = any(w in _HIGHER_WORDS for w in words) or "hit_rate" in name or "hitrate" in name
    if lower != higher:
        return "lower" if lower else "higher"
    return None


def _is_fraction(figure: str) -> bool:
    name = figure.lower()
    return name.endswith(("hit_rate", "error_rate", "hitrate"))


def _is_seconds(figure: str) -> bool:
    words = _WORD_RE.findall(figure.lower())
    return any(w.startswith(("latenc", "ttft", "tpot", "itl")) for w in words) and not any(
        w in ("ms", "us") for w in words
    )


def _number(value: float) -> str:
    size = abs(value)
    if not math.isfinite(value):
        return str(value)
    if size >= 100 or value == int(value):
        return f"{value:,.0f}" if size < 1e15 else f"{value:.3g}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def format_figure(figure: str, value: float | None) -> str:
    """``value`` in ``figure``'s unit, for people: ``12.3 ms``, ``5,210 req/s``, ``0.50%``."""
    if value is None or math.isnan(value):
        return "not measured"
    name = figure.lower()
    if _is_fraction(figure):
        return f"{value:.2%}"
    if _is_seconds(figure):
        if abs(value) < 1:
            return f"{_number(value * 1000)} ms"
        return f"{_number(value)} s"
    if "throughput" in name or "goodput" in name:
        return f"{_number(value)} req/s"
    if "cpu_us" in name:
        return f"{_number(value)} us/request"
    if name.endswith("_mb"):
        return f"{_number(value)} MB"
    return _number(value)


# -- thresholds ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Threshold:
    """``figure op value``, in the figure's own unit (seconds, req/s, MB, fractions)."""

    figure: str
    op: Op
    value: float

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ValueError(f"op must be one of <, <=, >, >=, got {self.op!r}")
        if not math.isfinite(self.value):
            raise ValueError(f"threshold value must be a finite number, got {self.value}")

    def holds(self, observed: float) -> bool:
        return _OPS[self.op](observed, self.value)

    @property
    def better(self) -> Better:
        return "lower" if self.op in ("<", "<=") else "higher"

    @property
    def expected(self) -> str:
        """``< 1 s``: the condition, in the figure's unit."""
        return f"{self.op} {format_figure(self.figure, self.value)}"

    def __str__(self) -> str:
        return f"{self.figure} {self.expected}"


#: The seed's limits: p99 latency < 1 s, throughput > 10 req/s, RSS < 400 MB, cache
#: hit rate > 50%, error rate < 1%.
DEFAULT_THRESHOLDS: tuple[Threshold, ...] = (
    Threshold("latency_p99", "<", 1.0),
    Threshold("throughput", ">", 10.0),
    Threshold("peak_rss_mb", "<", 400.0),
    Threshold("cache_hit_rate", ">", 0.5),
    Threshold("error_rate", "<", 0.01),
)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """A ``--check`` file: absolute limits and the regression test's settings."""

    limits: tuple[Threshold, ...] = DEFAULT_THRESHOLDS
    #: Significance of the one-sided U test.
    alpha: float = 0.01
    #: The relative change of the medians, in the bad direction, that counts.
    min_effect: float = 0.05
    #: Samples per figure the bench should take (the gate uses what it is given).
    repeats: int = 5
    #: Rerun before failing on a regression.
    confirm: bool = True
    #: The figures compared with the baseline; None: every one the baseline holds.
    figures_for_regression: tuple[str, ...] | None = None
    #: Which way is better, for figures whose name says nothing.
    directions: Mapping[str, Better] = field(default_factory=dict, hash=False)
    #: The file it was read from, for messages.
    source: str | None = None
    #: The file has no [thresholds] table, so ``limits`` are :data:`DEFAULT_THRESHOLDS`:
    #: a caller may keep only those on figures it measures.
    default_limits: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be between 0 and 1, got {self.alpha}")
        if not (math.isfinite(self.min_effect) and self.min_effect >= 0.0):
            raise ValueError(f"min_effect must be a number >= 0, got {self.min_effect}")
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {self.repeats}")
        for figure, better in self.directions.items():
            if better not in _BETTER:
                raise ValueError(f"direction of {figure} must be lower or higher, got {better!r}")

    def direction(self, figure: str) -> Better | None:
        """Which way ``figure`` is better: ``directions``, its name, then its thresholds'
        operators (when they agree)."""
        better = figure_direction(figure, self.directions)
        if better is not None:
            return better
        ops = {t.better for t in self.limits if t.figure == figure}
        return ops.pop() if len(ops) == 1 else None


@dataclass(frozen=True, slots=True)
class Finding:
    """One reason the gate fails."""

    figure: str
    kind: Kind
    #: The median of this run's repeats (None: not measured).
    observed: float | None
    #: What it should have been, for people: ``< 1 s``, ``at most 115 us/request``.
    expected: str
    #: A full sentence: what, by how much, and on what evidence.
    reason: str


def _limits_of(thresholds: Thresholds | Iterable[Threshold]) -> tuple[Threshold, ...]:
    return thresholds.limits if isinstance(thresholds, Thresholds) else tuple(thresholds)


def check_thresholds(
    figures: Mapping[str, float | None], thresholds: Thresholds | Iterable[Threshold]
) -> list[Finding]:
    """The thresholds ``figures`` (one value each: the median of the repeats) break.

    A figure a threshold names that is absent, None or NaN is a failure of kind
    ``missing``, once per figure.
    """
    findings: list[Finding] = []
    missing: set[str] = set()
    for limit in _limits_of(thresholds):
        value = figures.get(limit.figure)
        if value is None or math.isnan(value):
            if limit.figure not in missing:
                missing.add(limit.figure)
                findings.append(
                    Finding(
                        limit.figure,
                        "missing",
                        None,
                        limit.expected,
                        f"{limit.figure} was not measured (the threshold {limit} needs it)",
                    )
                )
        elif not limit.holds(value):
            findings.append(
                Finding(
                    limit.figure,
                    "threshold",
                    value,
                    limit.expected,
                    f"{limit.figure} {format_figure(limit.figure, value)} is not {limit.expected}",
                )
            )
    return findings


# -- the thresholds file ---------------------------------------------------------------

_TABLES = ("thresholds", "regression")
_REGRESSION_KEYS = ("alpha", "min_effect", "repeats", "confirm", "figures", "directions")
_CONDITION_RE = re.compile(
    r"\s*(<=|>=|<|>)\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*(%?)\s*\Z"
)


def _suggest(key: str, known: Sequence[str], what: str = "keys") -> str:
    import difflib

    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else f"; known {what}: {', '.join(known)}"


def _reason(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower()


def _unit_hint(figure: str) -> str:
    if _is_fraction(figure):
        return f'{figure} is a fraction: "> 0.5" or "> 50%"'
    if _is_seconds(figure):
        return f'{figure} is in seconds: "< 0.5" for 500 ms'
    return f"write the number in {figure}'s own unit"


class _Problems:
    def __init__(self, name: str) -> None:
        self.name = name
        self.problems: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.problems.append(f"{self.name}: {where}{': ' if where else ''}{message}")


def load_thresholds(path: str | os.PathLike[str]) -> Thresholds:
    """Read and check a thresholds file (format in the module docstring).

    Raises :class:`~agentic_synth.ConfigurationError` listing every problem, one per
    line, each naming the file, the table and the key, and saying what to write.
    """
    name = os.fspath(path)
    if os.path.isdir(name):
        raise ConfigurationError(f"{name} is a directory; name a thresholds TOML file")
    try:
        with open(name, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigurationError(
            f"{name}: no such file; check the path (--check names a thresholds TOML file)"
        ) from None
    except OSError as exc:
        raise ConfigurationError(f"{name}: cannot read: {_reason(exc)}") from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"{name}: not UTF-8 text; save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{name}: not valid TOML: {exc}") from None
    return parse_thresholds(data, name)


def parse_thresholds(data: Mapping[str, Any], name: str = "thresholds") -> Thresholds:
    """:func:`load_thresholds` on parsed TOML; ``name`` is the file named in messages."""
    p = _Problems(name)
    for key in data:
        if key not in _TABLES:
            p.add("", f"unknown table [{key}]{_suggest(key, _TABLES, 'tables')}")
    limits = DEFAULT_THRESHOLDS
    raw = data.get("thresholds")
    default_limits = raw is None
    if raw is not None:
        if isinstance(raw, Mapping):
            limits = tuple(_limits(p, raw))
        else:
            p.add("", f"thresholds must be a [thresholds] table, got {toml_shown(raw)}")
    settings: dict[str, Any] = {}
    regression = data.get("regression", {})
    if isinstance(regression, Mapping):
        settings = _regression(p, regression)
    else:
        p.add("", f"regression must be a [regression] table, got {toml_shown(regression)}")
    if not p.problems:
        probe = Thresholds(limits=limits, **settings)
        for figure in probe.figures_for_regression or ():
            if probe.direction(figure) is None:
                p.add(
                    "[regression] figures",
                    f"{figure}: its name does not say whether lower or higher is better; "
                    f'add it to [regression.directions] ({figure} = "lower" or "higher")',
                )
    if p.problems:
        raise ConfigurationError("\n".join(p.problems))
    return Thresholds(limits=limits, source=name, default_limits=default_limits, **settings)


def _limits(p: _Problems, table: Mapping[str, Any]) -> Iterable[Threshold]:
    for figure, raw in table.items():
        where = f"[thresholds] {figure}"
        conditions = raw if isinstance(raw, list) else [raw]
        if not conditions:
            p.add(where, 'an empty array; give one condition or more, such as "< 1.0"')
        for condition in conditions:
            match = _CONDITION_RE.match(condition) if isinstance(condition, str) else None
            if match is None:
                p.add(
                    where,
                    'must be a condition in quotes such as "< 1.0" (an operator: <, <=, >, >=, '
                    f"then a number; {_unit_hint(figure)}), got {toml_shown(condition)}",
                )
                continue
            op, number, percent = match.groups()
            value = float(number) / (100.0 if percent else 1.0)
            if not math.isfinite(value):
                p.add(where, f"the number must be finite, got {toml_shown(condition)}")
            elif _is_fraction(figure) and not 0.0 <= value <= 1.0:
                p.add(where, f"{_unit_hint(figure)}, between 0 and 1; got {toml_shown(condition)}")
            else:
                yield Threshold(figure, cast(Op, op), value)


def _regression(p: _Problems, table: Mapping[str, Any]) -> dict[str, Any]:
    where = "[regression]"
    out: dict[str, Any] = {}
    for key in table:
        if key not in _REGRESSION_KEYS:
            p.add(f"{where} {key}", f"unknown key{_suggest(key, _REGRESSION_KEYS)}")
    for key in ("alpha", "min_effect"):
        if key not in table:
            continue
        value = table[key]
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if not numeric or not math.isfinite(value):
            p.add(f"{where} {key}", f"must be a number, got {toml_shown(value)}")
        elif key == "alpha" and not 0.0 < value < 1.0:
            p.add(f"{where} alpha", f"must be between 0 and 1 (e.g. 0.01), got {toml_shown(value)}")
        elif key == "min_effect" and value < 0:
            p.add(f"{where} min_effect", f"must be >= 0 (0.05 is 5%), got {toml_shown(value)}")
        else:
            out[key] = float(value)
    if "repeats" in table:
        value = table["repeats"]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            p.add(
                f"{where} repeats", f"must be a whole number >= 1 (e.g. 5), got {toml_shown(value)}"
            )
        else:
            out["repeats"] = value
    if "confirm" in table:
        value = table["confirm"]
        if not isinstance(value, bool):
            p.add(f"{where} confirm", f"must be true or false, got {toml_shown(value)}")
        else:
            out["confirm"] = value
    if "figures" in table:
        value = table["figures"]
        if not isinstance(value, list) or not all(isinstance(f, str) and f for f in value):
            p.add(
                f"{where} figures",
                'must be an array of figure names such as ["cpu_us_per_request"], '
                f"got {toml_shown(value)}",
            )
        else:
            out["figures_for_regression"] = tuple(dict.fromkeys(value))
    if "directions" in table:
        value = table["directions"]
        if not isinstance(value, Mapping):
            p.add(
                f"{where} directions",
                f'must be a [regression.directions] table of figure = "lower" or "higher", '
                f"got {toml_shown(value)}",
            )
        else:
            directions: dict[str, Better] = {}
            for figure, better in value.items():
                if better not in _BETTER:
                    p.add(
                        f"[regression.directions] {figure}",
                        f'must be "lower" or "higher" (which is better), got {toml_shown(better)}',
                    )
                else:
                    directions[figure] = better
            out["directions"] = directions
    repeats = out.get("repeats", 5)
    alpha = out.get("alpha", 0.01)
    floor = _smallest_p(repeats, repeats)
    if floor > alpha:
        enough = min_repeats(alpha)
        p.add(
            f"{where} repeats",
            f"{repeats} repeats against {repeats} can never reach alpha = {alpha:g} (the "
            f"smallest one-sided p-value is {floor:.3g}); set repeats >= {enough} "
            "or raise alpha",
        )
    return out


# -- the Mann-Whitney U test -----------------------------------------------------------


@lru_cache(maxsize=64)
def _u_counts(n1: int, n2: int) -> tuple[int, ...]:
    """How many of the C(n1+n2, n1) orderings give each U = 0 .. n1*n2 (no ties).

    These are the coefficients of the Gaussian binomial [n1+n2 choose m]_q, built as
    the product over i = 1..m of (1 - q^(n+i)) / (1 - q^i), in exact integers.
    """
    m, n = min(n1, n2), max(n1, n2)
    poly = [1]
    for i in range(1, m + 1):
        shift = n + i
        out = poly + [0] * shift
        for k in range(len(poly)):
            out[k + shift] -= poly[k]
        for k in range(i, len(out)):  # divide by (1 - q^i): exact
            out[k] += out[k - i]
        poly = out[: i * n + 1]
    return tuple(poly)


def _exact_sf(u: float, n1: int, n2: int) -> float:
    """P(U >= u) under the null; a tied (half) U is rounded down, as scipy does."""
    counts = _u_counts(n1, n2)
    k = max(0, int(u))
    return sum(counts[k:]) / math.comb(n1 + n2, n1)


def _smallest_p(n1: int, n2: int) -> float:
    """The smallest one-sided p-value n1 vs n2 samples without ties can give."""
    return 1.0 / math.comb(n1 + n2, n1)


def smallest_p_value(current_n: int, baseline_n: int) -> float:
    """The smallest one-sided p-value of ``current_n`` samples against ``baseline_n``:
    above ``alpha``, no regression can ever be shown."""
    return _smallest_p(current_n, baseline_n)


def min_repeats(alpha: float, baseline_n: int | None = None) -> int:
    """The fewest repeats that can show a regression at ``alpha`` against a baseline
    of ``baseline_n`` samples (None: a baseline of as many repeats, as
    ``--update-baseline`` records)."""
    if not 0.0 < alpha < 1.0 or (baseline_n is not None and baseline_n < 1):
        raise ValueError(f"need 0 < alpha < 1 and baseline_n >= 1, got {alpha}, {baseline_n}")
    n = 1
    while _smallest_p(n, n if baseline_n is None else baseline_n) > alpha:
        n += 1  # ends: 1 / C(n + m, n) falls to 0 as n grows, for any m >= 1
    return n


def _ranks(values: Sequence[float]) -> tuple[list[float], list[int]]:
    """Average ranks (1-based) and the size of each group of ties."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    ties: list[int] = []
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        rank = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[order[k]] = rank
        ties.append(j - i + 1)
        i = j + 1
    return ranks, ties


def mann_whitney_u(
    a: Sequence[float],
    b: Sequence[float],
    alternative: Alternative = "two-sided",
    *,
    method: Method = "auto",
) -> tuple[float, float]:
    """``(U of a, p-value)`` of the Mann-Whitney U test, as ``scipy.stats.mannwhitneyu``.

    ``alternative="greater"``: ``a`` is stochastically greater than ``b``. ``auto``
    uses the exact distribution when one sample has at most 8 values and there are
    no ties (where the normal approximation is poor), else the normal approximation
    with tie and continuity corrections (where the exact one is slow or, with ties,
    wrong). ``exact`` with ties is conservative (U is rounded down), like scipy's.
    """
    if alternative not in ("two-sided", "less", "greater"):
        raise ValueError(f"alternative must be two-sided, less or greater, got {alternative!r}")
    if method not in ("auto", "exact", "asymptotic"):
        raise ValueError(f"method must be auto, exact or asymptotic, got {method!r}")
    n1, n2 = len(a), len(b)
    if not n1 or not n2:
        raise ValueError("both samples need at least one value")
    values = [float(v) for v in a] + [float(v) for v in b]
    if any(math.isnan(v) for v in values):
        raise ValueError("samples must not contain NaN")
    ranks, ties = _ranks(values)
    u1 = sum(ranks[:n1]) - n1 * (n1 + 1) / 2
    u2 = n1 * n2 - u1
    if alternative == "greater":
        u, factor = u1, 1
    elif alternative == "less":
        u, factor = u2, 1
    else:
        u, factor = max(u1, u2), 2
    tied = any(t > 1 for t in ties)
    if method == "auto":
        method = "exact" if (n1 <= 8 or n2 <= 8) and not tied else "asymptotic"
    if method == "exact":
        p = _exact_sf(u, n1, n2)
    else:
        n = n1 + n2
        tie_term = sum(t**3 - t for t in ties)
        variance = n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1))) if n > 1 else 0.0
        numerator = u - n1 * n2 / 2 - 0.5
        if variance <= 0:
            p = 1.0 if numerator < 0 else 0.0
        else:
            p = 0.5 * math.erfc(numerator / math.sqrt(variance) / math.sqrt(2))
    return u1, min(1.0, max(0.0, p * factor))


# -- regression against a baseline -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Comparison:
    """One figure of this run against the baseline."""

    figure: str
    better: Better
    current_median: float
    baseline_median: float
    #: Relative change of the medians in the bad direction: 0.1 is 10% worse, negative
    #: is better; +inf when the baseline median is 0 and this run is worse.
    change: float
    #: One-sided U test, alternative "this run is worse".
    p_value: float
    current_n: int
    baseline_n: int
    #: Both: p_value <= alpha and change >= min_effect.
    regressed: bool

    def summary(self) -> str:
        """``12.3% worse, p = 0.004 (5 vs 5)``."""
        if math.isinf(self.change):
            change = "worse than a baseline of 0" if self.change > 0 else "better than 0"
        else:
            change = f"{abs(self.change):.1%} {'worse' if self.change >= 0 else 'better'}"
        return f"{change}, p = {self.p_value:.2g} ({self.current_n} vs {self.baseline_n})"


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _clean(samples: Mapping[str, Any]) -> dict[str, list[float]]:
    """Finite floats only: a repeat that did not measure a figure drops out of it."""
    out: dict[str, list[float]] = {}
    for figure, values in samples.items():
        if values is None:
            values = []
        elif isinstance(values, int | float):
            values = [values]
        out[str(figure)] = [
            float(v)
            for v in values
            if v is not None and not isinstance(v, bool) and math.isfinite(float(v))
        ]
    return out


def _relative_change(current: float, baseline: float, better: Better) -> float:
    worse = current - baseline if better == "lower" else baseline - current
    if baseline == 0:
        return 0.0 if worse == 0 else math.copysign(math.inf, worse)
    return worse / abs(baseline)


def _compare_one(
    figure: str,
    current: Sequence[float],
    baseline: Sequence[float],
    better: Better,
    alpha: float,
    min_effect: float,
) -> Comparison:
    _, p = mann_whitney_u(current, baseline, "greater" if better == "lower" else "less")
    cur, base = statistics.median(current), statistics.median(baseline)
    change = _relative_change(cur, base, better)
    regressed = p <= alpha and change >= min_effect
    return Comparison(figure, better, cur, base, change, p, len(current), len(baseline), regressed)


def _bound(c: Comparison, min_effect: float) -> str:
    factor = 1 + min_effect if c.better == "lower" else 1 - min_effect
    word = "at most" if c.better == "lower" else "at least"
    return f"{word} {format_figure(c.figure, c.baseline_median * factor)}"


def _regression_finding(
    c: Comparison, alpha: float, min_effect: float, rerun: Comparison | None = None
) -> Finding:
    reason = (
        f"{c.figure} regressed: median {format_figure(c.figure, c.current_median)} against "
        f"the baseline's {format_figure(c.figure, c.baseline_median)}, {c.summary()}; "
        f"a regression needs both p <= {alpha:g} (one-sided Mann-Whitney U) and a change "
        f">= {min_effect:.0%}"
    )
    if rerun is not None:
        reason += f"; the rerun confirmed it: {rerun.summary()}"
    return Finding(c.figure, "regression", c.current_median, _bound(c, min_effect), reason)


def _comparisons(
    current: Mapping[str, Sequence[float]],
    baseline: Mapping[str, Sequence[float]],
    figures: Iterable[str],
    direction: Callable[[str], Better | None],
    alpha: float,
    min_effect: float,
) -> tuple[list[Comparison], list[Finding]]:
    done: list[Comparison] = []
    missing: list[Finding] = []
    for figure in figures:
        better = direction(figure)
        if better is None:
            raise ValueError(
                f"{figure}: its name does not say whether lower or higher is better; "
                f'pass directions={{"{figure}": "lower"}} (or "higher")'
            )
        base = baseline.get(figure) or []
        cur = current.get(figure) or []
        if not base:
            missing.append(
                Finding(
                    figure,
                    "missing",
                    _median(cur),
                    "a baseline to compare with",
                    f"{figure} is not in the baseline; rerun with --update-baseline to record it",
                )
            )
        elif not cur:
            missing.append(
                Finding(
                    figure,
                    "missing",
                    None,
                    f"near the baseline's {format_figure(figure, statistics.median(base))}",
                    f"{figure} is in the baseline but was not measured; measure it, or rerun "
                    "with --update-baseline to drop it",
                )
            )
        else:
            done.append(_compare_one(figure, cur, base, better, alpha, min_effect))
    return done, missing


def compare(
    current: Samples,
    baseline: Samples,
    *,
    alpha: float = 0.01,
    min_effect: float = 0.05,
    directions: Mapping[str, Better] | None = None,
    figures: Iterable[str] | None = None,
) -> list[Finding]:
    """The regressions of ``current`` against ``baseline`` (per-repeat samples each).

    A regression is a one-sided U test significant at ``alpha`` *and* a relative
    change of the medians of at least ``min_effect`` in the bad direction. Compares
    ``figures`` (default: every figure of the baseline); one missing on either side
    is a ``missing`` finding. A figure whose direction is unknown (see
    :func:`figure_direction`) raises ValueError.
    """
    cur, base = _clean(current), _clean(baseline)
    done, findings = _comparisons(
        cur,
        base,
        list(base) if figures is None else figures,
        lambda f: figure_direction(f, directions),
        alpha,
        min_effect,
    )
    findings += [_regression_finding(c, alpha, min_effect) for c in done if c.regressed]
    return findings


# -- baselines -------------------------------------------------------------------------


@dataclass(slots=True)
class Baseline:
    """Per-repeat samples of each figure, stored by ``--update-baseline``."""

    figures: dict[str, list[float]]
    #: Where it was measured (:func:`machine_environment`), to tell a run on another
    #: machine.
    environment: dict[str, Any] = field(default_factory=dict)
    #: ISO 8601, UTC.
    created: str = ""

    def medians(self) -> dict[str, float]:
        return {f: statistics.median(v) for f, v in self.figures.items() if v}


def machine_environment() -> dict[str, Any]:
    """What a machine-speed figure depends on: CPU, its count, Python, the OS."""
    cpu = platform.processor() or None
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable: int | None = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    from .. import __version__

    return {
        "cpu": cpu,
        "cpus": usable,
        "machine": platform.machine(),
        "system": platform.system(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "agentic_synth": __version__,
    }


_MACHINE_KEYS = ("cpu", "cpus", "machine", "system", "python", "implementation")


def _bad_baseline(name: str, problem: str) -> ConfigurationError:
    return ConfigurationError(
        f"{name}: {problem}; rerun with --update-baseline to write a new baseline"
    )


def load_baseline(path: str | os.PathLike[str]) -> Baseline:
    """Read a baseline file; one that is missing, malformed or of another schema
    version raises :class:`~agentic_synth.ConfigurationError` saying how to rewrite it."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise ConfigurationError(
            f"{name}: no such file; check the path, or write one with --update-baseline"
        ) from None
    except IsADirectoryError:
        raise ConfigurationError(f"{name} is a directory; name a baseline JSON file") from None
    except OSError as exc:
        raise ConfigurationError(f"{name}: cannot read: {_reason(exc)}") from None
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _bad_baseline(name, f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise _bad_baseline(name, "not a baseline (a JSON object with a schema key)")
    schema = data.get("schema")
    if schema != BASELINE_SCHEMA:
        raise _bad_baseline(
            name, f"schema is {json.dumps(schema)}, this version reads {BASELINE_SCHEMA}"
        )
    figures = data.get("figures")
    if not isinstance(figures, dict):
        raise _bad_baseline(name, "figures must be an object of figure name -> samples")
    clean: dict[str, list[float]] = {}
    for figure, values in figures.items():
        if not (
            isinstance(values, list)
            and values
            and all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                for v in values
            )
        ):
            raise _bad_baseline(
                name, f"figures.{figure} must be a non-empty array of numbers (one per repeat)"
            )
        clean[figure] = [float(v) for v in values]
    environment = data.get("environment", {})
    created = data.get("created", "")
    if not isinstance(environment, dict) or not isinstance(created, str):
        raise _bad_baseline(name, "environment must be an object and created a string")
    return Baseline(clean, environment, created)


def save_baseline(
    path: str | os.PathLike[str], samples: Samples, environment: Mapping[str, Any]
) -> None:
    """Write ``samples`` as the baseline, atomically: a crash or a full disk leaves the
    old file whole. Figures with no finite sample are left out."""
    name = os.fspath(path)
    figures = {f: v for f, v in _clean(samples).items() if v}
    document = {
        "schema": BASELINE_SCHEMA,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "environment": dict(environment),
        "figures": figures,
    }
    text = json.dumps(document, indent=2, default=str) + "\n"
    parent = os.path.dirname(os.path.abspath(name))
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{os.path.basename(name)}.", dir=parent)
    except OSError as exc:
        raise ConfigurationError(f"cannot write {name}: {_reason(exc)}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temp, 0o644)
        os.replace(temp, name)
    except OSError as exc:
        raise ConfigurationError(f"cannot write {name}: {_reason(exc)}") from None
    finally:
        if os.path.lexists(temp):
            os.unlink(temp)


# -- the gate --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GateReport:
    """What :func:`gate` measured and decided; :meth:`render` for people,
    :meth:`to_dict` for ``--json``."""

    findings: tuple[Finding, ...]
    #: The first run's per-repeat samples (what ``--update-baseline`` stores).
    samples: dict[str, list[float]]
    thresholds: Thresholds
    baseline: Baseline | None = None
    #: The first run against the baseline, one per compared figure.
    comparisons: tuple[Comparison, ...] = ()
    #: Whether a confirming rerun ran (a regression was suspected and confirm is on).
    confirmed_rerun: bool = False
    rerun_samples: dict[str, list[float]] | None = None
    #: The rerun against the baseline, for the suspected figures.
    rerun_comparisons: tuple[Comparison, ...] = ()
    #: Things worth knowing that do not fail the gate.
    notes: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.findings

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    @property
    def medians(self) -> dict[str, float | None]:
        return {f: _median(v) for f, v in self.samples.items()}

    def render(self) -> str:
        """A readable multi-line report: every check, then the failures' reasons."""
        n = len(self.findings)
        verdict = "PASS" if n == 0 else f"FAIL ({n} problem{'s' if n > 1 else ''})"
        lines = [f"bench gate: {verdict}"]
        medians = self.medians
        rows: list[tuple[str, str, str, str]] = []
        for limit in self.thresholds.limits:
            value = medians.get(limit.figure)
            ok = value is not None and limit.holds(value)
            shown = format_figure(limit.figure, value)
            rows.append(("ok" if ok else "FAIL", limit.figure, shown, limit.expected))
        if rows:
            counts = sorted({len(v) for v in self.samples.values() if v})
            lines.append(f"thresholds, on the median of {'/'.join(map(str, counts)) or 0} repeats:")
            lines += _table(rows)
        if self.baseline is not None:
            lines.append(
                f"against the baseline of {self.baseline.created or 'unknown date'}: a regression "
                f"is p <= {self.thresholds.alpha:g} (one-sided U test) and "
                f">= {self.thresholds.min_effect:.0%} worse"
                + (", confirmed by a rerun:" if self.thresholds.confirm else ":")
            )
            lines += _table(self._regression_rows()) or ["  (no figure compared)"]
        if self.findings:
            lines.append("problems:")
            lines += [f"  - {f.reason}" for f in self.findings]
        if self.notes:
            lines.append("notes:")
            lines += [f"  - {note}" for note in self.notes]
        return "\n".join(lines)

    def _regression_rows(self) -> list[tuple[str, str, str, str]]:
        failed = {f.figure for f in self.findings if f.kind == "regression"}
        rerun = {c.figure: c for c in self.rerun_comparisons}
        rows = []
        for c in self.comparisons:
            detail = f"baseline {format_figure(c.figure, c.baseline_median)}, {c.summary()}"
            if c.figure in rerun:
                detail += f"; rerun {rerun[c.figure].summary()}"
            # suspected but not confirmed by the rerun: "noise"
            verdict = "FAIL" if c.figure in failed else "noise" if c.regressed else "ok"
            rows.append((verdict, c.figure, format_figure(c.figure, c.current_median), detail))
        limited = {t.figure for t in self.thresholds.limits}
        for f in self.findings:
            if f.kind == "missing" and f.figure not in limited:
                rows.append(("FAIL", f.figure, format_figure(f.figure, f.observed), f.expected))
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "findings": [asdict(f) for f in self.findings],
            "samples": self.samples,
            "comparisons": [asdict(c) for c in self.comparisons],
            "confirmed_rerun": self.confirmed_rerun,
            "rerun_samples": self.rerun_samples,
            "rerun_comparisons": [asdict(c) for c in self.rerun_comparisons],
            "notes": list(self.notes),
        }


def _table(rows: Sequence[tuple[str, str, str, str]]) -> list[str]:
    if not rows:
        return []
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return [
        f"  {a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}  {d}".rstrip()
        for a, b, c, d in rows
    ]


def gate(
    measure: Callable[[], Samples],
    *,
    baseline: Baseline | None,
    thresholds: Thresholds,
    directions: Mapping[str, Better] | None = None,
    environment: Mapping[str, Any] | None = None,
) -> GateReport:
    """Run ``measure()`` (per-repeat samples of each figure), check the thresholds on
    the medians and compare with ``baseline``; on a suspected regression with
    ``thresholds.confirm``, run ``measure()`` once more and fail only the figures
    whose rerun alone regresses too. ``directions`` overrides the thresholds' own;
    ``environment`` (:func:`machine_environment`) is compared with the baseline's.
    """
    if directions:
        thresholds = Thresholds(
            limits=thresholds.limits,
            alpha=thresholds.alpha,
            min_effect=thresholds.min_effect,
            repeats=thresholds.repeats,
            confirm=thresholds.confirm,
            figures_for_regression=thresholds.figures_for_regression,
            directions={**thresholds.directions, **directions},
            source=thresholds.source,
            default_limits=thresholds.default_limits,
        )
    samples = _clean(measure())
    medians = {f: _median(v) for f, v in samples.items()}
    findings = check_thresholds(medians, thresholds)
    notes: list[str] = []
    comparisons: list[Comparison] = []
    rerun_comparisons: list[Comparison] = []
    rerun_samples: dict[str, list[float]] | None = None
    if baseline is not None:
        alpha, effect = thresholds.alpha, thresholds.min_effect
        figures = _regression_figures(samples, baseline, thresholds, notes)
        comparisons, missing = _comparisons(
            samples, baseline.figures, figures, thresholds.direction, alpha, effect
        )
        unmeasured = {f.figure for f in findings if f.kind == "missing"}
        findings += [f for f in missing if f.figure not in unmeasured]  # said once is enough
        suspected = [c for c in comparisons if c.regressed]
        if suspected and thresholds.confirm:
            rerun_samples = _clean(measure())
            rerun_comparisons, rerun_missing = _comparisons(
                rerun_samples,
                baseline.figures,
                [c.figure for c in suspected],
                thresholds.direction,
                alpha,
                effect,
            )
            findings += rerun_missing
            second = {c.figure: c for c in rerun_comparisons}
            for c in suspected:
                again = second.get(c.figure)
                if again is not None and again.regressed:
                    findings.append(_regression_finding(c, alpha, effect, again))
                elif again is not None:
                    notes.append(
                        f"{c.figure} looked {c.summary()}, but the rerun did not confirm it "
                        f"({again.summary()}): taken as noise"
                    )
        else:
            findings += [_regression_finding(c, alpha, effect) for c in suspected]
        for c in comparisons:
            if _smallest_p(c.current_n, c.baseline_n) > alpha:
                notes.append(
                    f"{c.figure}: {c.current_n} vs {c.baseline_n} samples can never reach "
                    f"p <= {alpha:g}; take more repeats (5 and 5 reach 0.004)"
                )
        if environment is not None:
            notes += _environment_notes(baseline.environment, environment)
    return GateReport(
        findings=tuple(findings),
        samples=samples,
        thresholds=thresholds,
        baseline=baseline,
        comparisons=tuple(comparisons),
        confirmed_rerun=rerun_samples is not None,
        rerun_samples=rerun_samples,
        rerun_comparisons=tuple(rerun_comparisons),
        notes=tuple(notes),
    )


def _regression_figures(
    samples: Mapping[str, Sequence[float]],
    baseline: Baseline,
    thresholds: Thresholds,
    notes: list[str],
) -> list[str]:
    if thresholds.figures_for_regression is not None:
        return list(thresholds.figures_for_regression)
    figures = []
    for figure in baseline.figures:
        if thresholds.direction(figure) is None:
            notes.append(
                f"{figure} is not compared with the baseline: its name does not say whether "
                "lower or higher is better ([regression.directions] does)"
            )
        else:
            figures.append(figure)
    new = [f for f, v in samples.items() if v and f not in baseline.figures]
    if new:
        notes.append(
            f"not in the baseline, so not compared: {', '.join(new)} "
            "(--update-baseline records them)"
        )
    return figures


def _environment_notes(then: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    changed = [
        f"{key} {then[key]} -> {now[key]}"
        for key in _MACHINE_KEYS
        if key in then and key in now and then[key] != now[key]
    ]
    if not changed:
        return []
    return [
        f"the baseline was measured elsewhere ({'; '.join(changed)}): figures that depend on "
        "the machine's speed are not comparable; rerun with --update-baseline on this machine"
    ]
