"""Event streams: computed locally under a seed, or as a skeleton a model fills with content.

Always exactly ``count`` events, whatever the distribution and the range (the
seed package's Poisson loop stopped at the range's end and came up short about 40%
of the time for ``count >= 10``). Events come sorted by time, inside the half-open
``time_range`` ``[start, end)``, at millisecond resolution
(``2026-01-01T00:00:00.000Z``, what the seed emitted; ties are possible when the
range holds fewer milliseconds than events, and keep their draw order).

Times, by ``distribution`` (the seed's names and meanings):

- ``"uniform"``, "events evenly distributed over time": the range is cut into
  ``count`` equal slots with one event at a uniform instant in each (stratified),
  so each event's time is uniform over the range and the counts per hour are as
  flat as they can be (gaps average one slot, coefficient of variation 0.41);
- ``"poisson"``, "random but clustered, like web traffic": a homogeneous Poisson
  process conditioned on exactly ``count`` arrivals in the range, i.e. the order
  statistics of ``count`` uniforms, drawn in increasing order one at a time
  (``u_k = 1 - (1 - u_{k-1}) V^(1/(count-k+1))``, constant memory); the gaps are
  exponential with mean ``range/count`` (to within O(1/count)): bursts and lulls;
- ``"normal"``, "concentrated around the mean time": normal around the middle of
  the range with ``sigma = range / 6`` (the seed's choice), truncated to the range
  (the 0.27% of mass beyond 3 sigma is redistributed, not clipped onto the bounds,
  so no events pile up on ``start`` or ``end``); drawn as the inverse truncated
  normal CDF of the sorted uniforms above, so it is exact and constant-memory too.

``event_types`` is a list (uniform) or a dict of weights. ``users`` is a number of
users (ids ``user_1`` .. ``user_N``, the seed's 1-based numbering) or the ids
themselves, e.g. the ``id`` column of a generated users table, so references
resolve; ``user_distribution`` is ``"uniform"`` (the seed's) or ``"zipf"``:
``P(k-th id) = (1/k) / H_N`` (exponent 1; the first id is the heaviest user, as in
real traffic where a few users make most events). ``event_id`` is a version-4
UUID drawn from the seed: reproducible, and unique with overwhelming probability.

Every column draws from its own stream derived from the seed, so the same seed
with another ``distribution`` changes the times only: ids, types, users and
metadata stay the same, event for event.

Division of labour for ``mode="llm"``: :func:`events_skeleton` samples everything
structural (ids, times, types, users) exactly as ``mode="local"`` does; the model
writes only each event's ``description`` and ``metadata`` (the content schema),
:meth:`Skeleton.fill` merges them without letting them touch a sampled field, and
:func:`check_events` checks the merged records (order, range, references).
"""

from __future__ import annotations

import statistics
from bisect import bisect
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import accumulate
from typing import Any, Literal

from .._exceptions import InvalidRequestError
from ._skeleton import (
    EPOCH,
    Problems,
    Seed,
    Skeleton,
    TimeLike,
    format_utc,
    is_number,
    parse_utc_timestamp,
    resolve_seed,
    stream,
    to_microseconds,
    to_utc,
)

__all__ = [
    "EVENTS_CONTENT_SCHEMA",
    "NORMAL_SIGMAS",
    "Distribution",
    "EventsPlan",
    "UserDistribution",
    "check_events",
    "events_skeleton",
    "generate_events_local",
    "iter_events_local",
    "plan_events",
]

Distribution = Literal["uniform", "poisson", "normal"]
UserDistribution = Literal["uniform", "zipf"]
TimeRange = tuple[TimeLike, TimeLike] | Mapping[str, TimeLike]

NORMAL_SIGMAS = 3.0  # the range spans +-3 sigma: sigma = range / 6
DEFAULT_EVENT_TYPES = ("click", "view", "purchase")
_DISTRIBUTIONS = ("uniform", "poisson", "normal")
_USER_DISTRIBUTIONS = ("uniform", "zipf")
_SAMPLED = ("event_id", "timestamp", "event_type", "user_id")
_DAY_MS = 86_400_000
_NORMAL = statistics.NormalDist()

EVENTS_CONTENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "description": {
            "type": "string",
            "minLength": 1,
            "maxLength": 500,
            "description": "What the user did, consistent with the event type and time.",
        },
        "metadata": {
            "type": "object",
            "description": "Details specific to the event type (page, element, amount, ...).",
        },
    },
    "required": ["description", "metadata"],
    "additionalProperties": False,
}


@dataclass(frozen=True, slots=True)
class EventsPlan:
    """The validated arguments: what the stream will be before anything is drawn."""

    count: int
    start: datetime
    end: datetime
    event_types: tuple[str, ...]
    weights: tuple[float, ...] | None
    distribution: Distribution
    users: tuple[str, ...]
    user_distribution: UserDistribution
    metadata: bool
    seed: int | str


def _time_range(time_range: TimeRange | None) -> tuple[datetime, datetime]:
    if time_range is None:
        raise InvalidRequestError(
            "time_range=(start, end) is required (a default relative to now would not "
            "be reproducible)"
        )
    if isinstance(time_range, Mapping):
        if set(time_range) != {"start", "end"}:
            raise InvalidRequestError("time_range as a dict takes exactly 'start' and 'end'")
        pair = (time_range["start"], time_range["end"])
    elif isinstance(time_range, str | bytes) or len(time_range) != 2:
        raise InvalidRequestError("time_range must be (start, end)")
    else:
        pair = (time_range[0], time_range[1])
    start, end = to_utc(pair[0], "time_range start"), to_utc(pair[1], "time_range end")
    if _ceil_ms(end) <= _ceil_ms(start):
        raise InvalidRequestError(
            f"time_range [{format_utc(start, True)}, {format_utc(end, True)}) must hold a "
            "whole millisecond (events are timed to the millisecond)"
        )
    return start, end


def _ceil_ms(value: datetime) -> int:
    return -(-to_microseconds(value) // 1000)


def _names(values: Sequence[Any], what: str) -> tuple[str, ...]:
    names = tuple(values)
    if not names:
        raise InvalidRequestError(f"give at least one {what}")
    if any(not isinstance(v, str) or not v for v in names):
        raise InvalidRequestError(f"every {what} must be a non-empty str: {list(names)[:10]}")
    if len(set(names)) != len(names):
        raise InvalidRequestError(f"{what}s repeat")
    return names


def _event_types(
    event_types: Sequence[str] | Mapping[str, float],
) -> tuple[tuple[str, ...], tuple[float, ...] | None]:
    if isinstance(event_types, str):
        event_types = [event_types]
    if isinstance(event_types, Mapping):
        names = _names(list(event_types), "event type")
        weights = tuple(event_types[n] for n in names)
        if any(not is_number(w) or w < 0 for w in weights) or sum(weights) <= 0:
            raise InvalidRequestError(
                f"event type weights must be finite numbers >= 0 with a positive sum: {weights}"
            )
        return names, tuple(float(w) for w in weights)
    return _names(event_types, "event type"), None


def _users(users: int | Sequence[str]) -> tuple[str, ...]:
    if isinstance(users, bool):
        raise InvalidRequestError(f"users must be a count or a list of ids, got {users!r}")
    if isinstance(users, int):
        if users < 1:
            raise InvalidRequestError(f"users must be at least 1, got {users}")
        return tuple(f"user_{k}" for k in range(1, users + 1))
    if isinstance(users, str):
        raise InvalidRequestError("users must be a count or a list of ids, not one str")
    return _names(users, "user id")


def plan_events(
    count: int = 100,
    event_types: Sequence[str] | Mapping[str, float] = DEFAULT_EVENT_TYPES,
    distribution: Distribution = "uniform",
    time_range: TimeRange | None = None,
    users: int | Sequence[str] = 50,
    *,
    user_distribution: UserDistribution = "uniform",
    metadata: bool = True,
    seed: Seed = None,
) -> EventsPlan:
    """Validate the arguments of :func:`generate_events_local` all at once (a lazy
    generator must fail at the call, not at the first ``next``)."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise InvalidRequestError(f"count must be an int >= 0, got {count!r}")
    if distribution not in _DISTRIBUTIONS:
        raise InvalidRequestError(
            f"distribution must be one of {_DISTRIBUTIONS}, got {distribution!r}"
        )
    if user_distribution not in _USER_DISTRIBUTIONS:
        raise InvalidRequestError(
            f"user_distribution must be one of {_USER_DISTRIBUTIONS}, got {user_distribution!r}"
        )
    start, end = _time_range(time_range)
    names, weights = _event_types(event_types)
    return EventsPlan(
        count,
        start,
        end,
        names,
        weights,
        distribution,
        _users(users),
        user_distribution,
        bool(metadata),
        resolve_seed(seed),
    )


def _fractions(plan: EventsPlan) -> Iterator[float]:
    """Each event's position in ``[0, 1)`` of the range, increasing (see the module doc)."""
    n = plan.count
    random = stream(plan.seed, "times").random
    if plan.distribution == "uniform":
        for k in range(n):
            yield (k + random()) / n
        return
    lo = _NORMAL.cdf(-NORMAL_SIGMAS)
    width = _NORMAL.cdf(NORMAL_SIGMAS) - lo
    inv_cdf = _NORMAL.inv_cdf
    normal = plan.distribution == "normal"
    remaining = 1.0  # 1 - the previous order statistic
    for k in range(n):
        remaining *= random() ** (1.0 / (n - k))
        u = 1.0 - remaining
        if normal:
            yield 0.5 + inv_cdf(lo + u * width) / (2 * NORMAL_SIGMAS)  # lo > 0: in (0, 1)
        else:
            yield u


def _chooser(
    values: tuple[str, ...], weights: Sequence[float] | None, rng_label: str, plan: EventsPlan
) -> Callable[[], str]:
    random = stream(plan.seed, rng_label).random
    if weights is None:
        size = len(values)
        return lambda: values[int(random() * size)]
    cumulative = list(accumulate(weights))
    total = cumulative[-1]
    last = len(values) - 1
    return lambda: values[min(bisect(cumulative, random() * total), last)]


def _metadata_maker(plan: EventsPlan) -> Callable[[str], dict[str, Any]]:
    """The seed's local metadata per type (click, view, purchase; others get ``{}``),
    from its own stream; ``mode="llm"`` has the model write metadata instead."""
    random = stream(plan.seed, "metadata").random
    elements = ("button", "link", "image")

    def make(event_type: str) -> dict[str, Any]:
        kind = event_type.lower()
        if kind == "click":
            return {
                "element": elements[int(random() * 3)],
                "x": int(random() * 1920),
                "y": int(random() * 1080),
            }
        if kind == "view":
            return {"page": f"/page{int(random() * 10)}", "duration_s": int(random() * 300)}
        if kind == "purchase":
            return {
                "amount": round(0.01 + random() * 99.99, 2),
                "currency": "USD",
                "items": 1 + int(random() * 5),
            }
        return {}

    return make


_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID_SET = (4 << 76) | (0x8000 << 48)


def _uuid4(random_bits: int) -> str:
    """``str(uuid.UUID(int=random_bits, version=4))`` at a third of the cost."""
    h = f"{(random_bits & _UUID_CLEAR) | _UUID_SET:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _events(plan: EventsPlan, with_metadata: bool) -> Iterator[dict[str, Any]]:
    start_ms = _ceil_ms(plan.start)
    span = _ceil_ms(plan.end) - start_ms
    last = span - 1
    event_type = _chooser(plan.event_types, plan.weights, "types", plan)
    zipf = None
    if plan.user_distribution == "zipf":
        zipf = [1.0 / k for k in range(1, len(plan.users) + 1)]
    user = _chooser(plan.users, zipf, "users", plan)
    bits = stream(plan.seed, "ids").getrandbits
    make_metadata = _metadata_maker(plan) if with_metadata else None
    day = None
    prefix = ""
    previous = 0
    for fraction in _fractions(plan):
        offset = int(fraction * span)
        offset = previous if offset < previous else last if offset > last else offset
        previous = offset
        ms = start_ms + offset
        d, rest = divmod(ms, _DAY_MS)
        if d != day:
            day = d
            prefix = (EPOCH.date() + timedelta(days=d)).isoformat()
        seconds, milli = divmod(rest, 1000)
        minutes, second = divmod(seconds, 60)
        hour, minute = divmod(minutes, 60)
        kind = event_type()
        record: dict[str, Any] = {
            "event_id": _uuid4(bits(128)),
            "timestamp": f"{prefix}T{hour:02d}:{minute:02d}:{second:02d}.{milli:03d}Z",
            "event_type": kind,
            "user_id": user(),
        }
        if make_metadata is not None:
            record["metadata"] = make_metadata(kind)
        yield record


def iter_events_local(
    count: int = 100,
    event_types: Sequence[str] | Mapping[str, float] = DEFAULT_EVENT_TYPES,
    distribution: Distribution = "uniform",
    time_range: TimeRange | None = None,
    users: int | Sequence[str] = 50,
    *,
    user_distribution: UserDistribution = "uniform",
    metadata: bool = True,
    seed: Seed = None,
) -> Iterator[dict[str, Any]]:
    """The events one at a time, in time order (constant memory); arguments are
    checked at the call."""
    plan = plan_events(
        count,
        event_types,
        distribution,
        time_range,
        users,
        user_distribution=user_distribution,
        metadata=metadata,
        seed=seed,
    )
    return _events(plan, plan.metadata)


def generate_events_local(
    count: int = 100,
    event_types: Sequence[str] | Mapping[str, float] = DEFAULT_EVENT_TYPES,
    distribution: Distribution = "uniform",
    time_range: TimeRange | None = None,
    users: int | Sequence[str] = 50,
    *,
    user_distribution: UserDistribution = "uniform",
    metadata: bool = True,
    seed: Seed = None,
) -> list[dict[str, Any]]:
    """Exactly ``count`` events ``{"event_id", "timestamp", "event_type", "user_id",
    "metadata"}`` sorted by time, deterministic under ``seed``."""
    return list(
        iter_events_local(
            count,
            event_types,
            distribution,
            time_range,
            users,
            user_distribution=user_distribution,
            metadata=metadata,
            seed=seed,
        )
    )


def events_skeleton(
    count: int = 100,
    event_types: Sequence[str] | Mapping[str, float] = DEFAULT_EVENT_TYPES,
    distribution: Distribution = "uniform",
    time_range: TimeRange | None = None,
    users: int | Sequence[str] = 50,
    *,
    user_distribution: UserDistribution = "uniform",
    seed: Seed = None,
    content_schema: Mapping[str, Any] | None = None,
) -> Skeleton:
    """The sampled events without content (``event_id``, ``timestamp``, ``event_type``,
    ``user_id``: the same values as the local events for the same seed) and the
    schema of what a model writes per event (:data:`EVENTS_CONTENT_SCHEMA` unless
    ``content_schema`` is given)."""
    plan = plan_events(
        count,
        event_types,
        distribution,
        time_range,
        users,
        user_distribution=user_distribution,
        metadata=False,
        seed=seed,
    )
    if content_schema is None:
        schema = dict(EVENTS_CONTENT_SCHEMA)
    else:
        if content_schema.get("type") != "object" or not isinstance(
            content_schema.get("properties"), Mapping
        ):
            raise InvalidRequestError("content_schema must be an object schema with properties")
        clash = set(_SAMPLED) & set(content_schema["properties"])
        if clash:
            raise InvalidRequestError(
                f"content_schema may not define sampled fields {sorted(clash)}"
            )
        schema = dict(content_schema)
    return Skeleton(list(_events(plan, False)), schema)


def check_events(
    records: Sequence[Mapping[str, Any]],
    *,
    count: int | None = None,
    users: int | Sequence[str] | None = None,
    event_types: Sequence[str] | Mapping[str, float] | None = None,
    time_range: TimeRange | None = None,
    limit: int = 100,
) -> list[str]:
    """Problems with ``records`` as an event stream (empty when none): exact count,
    UTC ISO 8601 timestamps in non-decreasing order inside ``[start, end)``, unique
    ``event_id``, ``event_type`` in the set and ``user_id`` among ``users`` (each
    checked when given)."""
    problems = Problems(limit)
    if count is not None and len(records) != count:
        problems.add(f"{len(records)} records, expected exactly {count}")
    known_users = None if users is None else frozenset(_users(users))
    known_types = None if event_types is None else frozenset(_event_types(event_types)[0])
    lo = hi = None
    if time_range is not None:
        lo, hi = _time_range(time_range)
    seen: set[str] = set()
    previous: datetime | None = None
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            problems.add(f"record {i}: not an object")
            continue
        event_id = record.get("event_id")
        if not isinstance(event_id, str) or not event_id:
            problems.add(f"record {i}: event_id {event_id!r} is not a non-empty str")
        elif event_id in seen:
            problems.add(f"record {i}: event_id {event_id} repeats")
        else:
            seen.add(event_id)
        when, why = parse_utc_timestamp(record.get("timestamp"))
        if when is None:
            problems.add(f"record {i}: {why}")
        else:
            if previous is not None and when < previous:
                problems.add(f"record {i}: {record['timestamp']} is earlier than record {i - 1}")
            if lo is not None and when < lo:
                problems.add(f"record {i}: {record['timestamp']} is before the range")
            if hi is not None and when >= hi:
                problems.add(f"record {i}: {record['timestamp']} is not before the range's end")
            previous = when
        kind = record.get("event_type")
        if not isinstance(kind, str) or (known_types is not None and kind not in known_types):
            problems.add(f"record {i}: event_type {kind!r} is not one of the event types")
        user_id = record.get("user_id")
        if not isinstance(user_id, str) or (known_users is not None and user_id not in known_users):
            problems.add(f"record {i}: user_id {user_id!r} does not resolve to a user")
    return problems.result()
