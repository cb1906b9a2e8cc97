"""Budgets that cannot be overshot, even with hundreds of requests in flight.

Each request *reserves* its worst-case cost (every prompt byte a token at the
dearest input price, ``max_tokens`` of output) before it is sent, and *settles*
to its real cost when it returns. A reservation that does not fit waits while
others are outstanding (they usually settle far below their worst case); when
nothing is outstanding and it still does not fit, the budget is exhausted: that
request and every later one end with :class:`BudgetExceededError`, unsent.

A call whose outcome is unknown (timed out or cut off after it was sent, or
cancelled while in flight) may have been billed: it stays charged at its worst
case, counted apart as *uncertain*. A call the server refused with an error
status was not billed and settles to 0 (see :data:`FAILED_CALL_CHARGE`).

Spending persists when the budget has a ``period`` (``"day"``, ``"month"``, UTC)
or a ``path``: a SQLite ledger shared by every process on the machine. Each
process claims allowance from the ledger in chunks (a percent of the limit) and
spends from it in memory, so a check costs microseconds; what it spent is
written back at least every second and at exit. A process that dies without
writing back leaves its claim counted as spent (never overshoot, at the price
of under-using one chunk).
"""

from __future__ import annotations

import math
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio

from ._exceptions import (
    APIConnectionError,
    APITimeoutError,
    BudgetExceededError,
    ConfigurationError,
    PoolTimeoutError,
    ProviderError,
    UnreachableError,
)
from ._log import get_logger

if TYPE_CHECKING:
    from ._budget_redis import RedisLedger

__all__ = [
    "FAILED_CALL_CHARGE",
    "Budget",
    "BudgetAccount",
    "BudgetAlert",
    "Hold",
    "default_ledger_path",
    "failed_call_charge",
]

log = get_logger("agentic_synth")

Period = Literal["day", "month"]

#: What a failed call may have cost, by error class, first match wins: ``"none"``
#: (never sent, or refused by the server with an error status: not billed) or
#: ``"unknown"`` (sent, and the answer lost on the way: it may have been billed,
#: so it stays charged at its worst case).
FAILED_CALL_CHARGE: tuple[tuple[type[BaseException], Literal["none", "unknown"]], ...] = (
    (PoolTimeoutError, "none"),  # waited for a connection: never sent
    (UnreachableError, "none"),  # no connection was made
    (APITimeoutError, "unknown"),  # sent; the model may have answered in full
    (APIConnectionError, "unknown"),  # reset, cut off or malformed mid-answer
    (ProviderError, "none"),  # an error status: the provider does not bill it
)

#: Share of the limit a process claims from a persistent ledger at a time.
_CHUNK = 0.01
#: Seconds between write-backs of a persistent budget's spending.
_FLUSH_EVERY = 1.0
#: Write-backs of other processes a reservation waits for before it is refused.
_OTHERS_WAITS = 3
#: A claim not refreshed for this long belongs to a dead process: reclaimed as spent.
_STALE_SECONDS = 60.0


def failed_call_charge(error: BaseException) -> Literal["none", "unknown"]:
    """How a failed call is settled (:data:`FAILED_CALL_CHARGE`); anything not in
    the table (a bug, a cancellation) is ``"unknown"``."""
    for kind, charge in FAILED_CALL_CHARGE:
        if isinstance(error, kind):
            return charge
    return "unknown"


@dataclass(frozen=True, slots=True)
class BudgetAlert:
    """A threshold of the budget was crossed (each fires once per budget period)."""

    threshold: float
    spent_usd: float
    limit_usd: float
    period: str | None


@dataclass(frozen=True, slots=True)
class Budget:
    """A spending limit for a :class:`~agentic_synth.Synth` (``Synth(budget=...)``,
    ``synth generate --budget USD``).

    ``period=None`` limits one session (one ``async with`` block) unless ``path``
    names a ledger file, which then holds the total across runs; ``"day"`` /
    ``"month"`` limit each UTC day or month, persisted in ``path`` (default
    :func:`default_ledger_path`). ``alerts`` are fractions of the limit; each is
    logged once (and passed to ``on_alert``) when spending crosses it.
    """

    limit_usd: float
    alerts: Sequence[float] = (0.5, 0.8, 0.9)
    period: Period | None = None
    #: A file, or ``redis://`` (its password is never shown: not in the repr).
    path: str | os.PathLike[str] | None = field(default=None, repr=False)
    on_alert: Callable[[BudgetAlert], None] | None = field(default=None, compare=False)
    #: Budgets sharing a ledger file are told apart by name.
    name: str = "default"
    #: Wall clock (epoch seconds) deciding the period; injectable for tests.
    now: Callable[[], float] = field(default=time.time, compare=False, repr=False)

    def __post_init__(self) -> None:
        limit = self.limit_usd
        if isinstance(limit, bool) or not isinstance(limit, int | float):
            raise ConfigurationError(
                f"Budget(limit_usd=...) must be a number of US dollars, got {limit!r}"
            )
        if not (limit > 0 and math.isfinite(limit)):
            raise ConfigurationError(
                f"Budget(limit_usd=...) must be a positive number of US dollars, got {limit!r}"
            )
        alerts = tuple(self.alerts)
        for a in alerts:
            if isinstance(a, bool) or not isinstance(a, int | float) or not 0 < a <= 1:
                raise ConfigurationError(
                    f"Budget alerts are fractions of the limit in (0, 1], such as 0.8; got {a!r}"
                )
        object.__setattr__(self, "alerts", tuple(sorted(set(float(a) for a in alerts))))
        if self.period not in (None, "day", "month"):
            raise ConfigurationError(
                f"Budget period must be None, 'day' or 'month', got {self.period!r}"
            )
        if not isinstance(self.name, str) or not self.name:
            raise ConfigurationError("Budget name must be a non-empty string")

    @classmethod
    def coerce(cls, value: Any) -> Budget | None:
        """``Synth(budget=...)``: a Budget, a number of dollars, or ``None``."""
        if value is None or isinstance(value, Budget):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return cls(limit_usd=float(value))
        raise ConfigurationError(
            f"budget must be a Budget(limit_usd=...) or a number of US dollars, got "
            f"{type(value).__name__}"
        )

    @property
    def ledger_url(self) -> str | None:
        """The ``redis://`` (``rediss://``) ledger shared by every machine, if ``path``
        is one."""
        path = self.path
        if isinstance(path, str) and path.split("://", 1)[0] in ("redis", "rediss", "unix"):
            return path
        return None

    def ledger_path(self) -> Path | None:
        """Where spending persists: ``path``, else the default file for a period
        budget; ``None`` (memory only, or a Redis ledger) for a plain session budget."""
        if self.ledger_url is not None:
            return None
        if self.path is not None:
            return Path(self.path).expanduser()
        if self.period is not None:
            return default_ledger_path()
        return None

    def period_key(self, now: float | None = None) -> str:
        """``"2026-12-01"`` for a day, ``"2026-12"`` for a month, ``"all"`` without."""
        if self.period is None:
            return "all"
        stamp = time.gmtime(self.now() if now is None else now)
        if self.period == "day":
            return time.strftime("%Y-%m-%d", stamp)
        return time.strftime("%Y-%m", stamp)


def default_ledger_path() -> Path:
    """``$XDG_STATE_HOME/agentic-synth/budget.sqlite`` (``~/.local/state/...``)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return Path(base) / "agentic-synth" / "budget.sqlite"


class Hold:
    """One request's reservation; settled exactly once."""

    __slots__ = ("amount", "settled")

    def __init__(self, amount: float) -> None:
        self.amount = amount
        self.settled = False


class _Ledger:
    """Spending shared through a SQLite file: the committed total per budget and
    period, each live process's claim, and the alerts already fired."""

    def __init__(self, path: Path, scope: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # one connection, used from the loop and from worker threads, one at a time
        self._db = sqlite3.connect(
            path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS budget_spent (
                scope TEXT NOT NULL, period TEXT NOT NULL, committed REAL NOT NULL,
                uncertain REAL NOT NULL DEFAULT 0, PRIMARY KEY (scope, period));
            CREATE TABLE IF NOT EXISTS budget_claims (
                scope TEXT NOT NULL, period TEXT NOT NULL, holder TEXT NOT NULL,
                host TEXT NOT NULL, pid INTEGER NOT NULL, amount REAL NOT NULL,
                updated REAL NOT NULL, PRIMARY KEY (scope, period, holder));
            CREATE TABLE IF NOT EXISTS budget_alerts (
                scope TEXT NOT NULL, period TEXT NOT NULL, threshold REAL NOT NULL,
                fired REAL NOT NULL, PRIMARY KEY (scope, period, threshold));
            """
        )
        self._scope = scope
        self._holder = uuid.uuid4().hex
        self._host = socket.gethostname()
        self.path = path

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _reap(self, period: str) -> None:
        """Claims of dead processes on this host become spending (their unreported
        spending is unknown: the whole claim counts)."""
        rows = self._db.execute(
            "SELECT holder, host, pid, amount, updated FROM budget_claims "
            "WHERE scope=? AND period=?",
            (self._scope, period),
        ).fetchall()
        stale = time.time() - _STALE_SECONDS
        for holder, host, pid, amount, updated in rows:
            if holder == self._holder:
                continue
            # a live holder refreshes its claim every second; a dead one's pid may be
            # reused (a restarted container is pid 1 again), so age decides too
            dead = (host == self._host and not _alive(int(pid))) or updated < stale
            if not dead:
                continue
            self._add(period, amount, amount)
            self._db.execute(
                "DELETE FROM budget_claims WHERE scope=? AND period=? AND holder=?",
                (self._scope, period, holder),
            )
            log.warning("budget_claim_reclaimed", pid=pid, usd=round(amount, 6), period=period)

    def _add(self, period: str, spent: float, uncertain: float) -> None:
        self._db.execute(
            "INSERT INTO budget_spent (scope, period, committed, uncertain) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (scope, period) DO UPDATE SET committed = committed + excluded.committed, "
            "uncertain = uncertain + excluded.uncertain",
            (self._scope, period, spent, uncertain),
        )

    def _totals(self, period: str) -> tuple[float, float, float]:
        row = self._db.execute(
            "SELECT committed, uncertain FROM budget_spent WHERE scope=? AND period=?",
            (self._scope, period),
        ).fetchone()
        committed, uncertain = (0.0, 0.0) if row is None else (float(row[0]), float(row[1]))
        (claimed,) = self._db.execute(
            "SELECT COALESCE(SUM(amount), 0) FROM budget_claims WHERE scope=? AND period=?",
            (self._scope, period),
        ).fetchone()
        return committed, uncertain, float(claimed)

    def exchange(
        self, period: str, limit: float, want: float, spent: float, uncertain: float, keep: float
    ) -> tuple[float, float, float]:
        """In one transaction: report ``spent`` (of which ``uncertain``) out of this
        process's claim, set the claim to ``keep`` plus up to ``want`` more (within
        the limit), and read the totals. Returns (new claim, committed, what other
        live processes hold claimed)."""
        with self._lock:
            return self._exchange(period, limit, want, spent, uncertain, keep)

    def _exchange(
        self, period: str, limit: float, want: float, spent: float, uncertain: float, keep: float
    ) -> tuple[float, float, float]:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            self._reap(period)
            if spent:
                self._add(period, spent, uncertain)
            committed, _, claimed = self._totals(period)
            (mine,) = db.execute(
                "SELECT COALESCE(SUM(amount), 0) FROM budget_claims "
                "WHERE scope=? AND period=? AND holder=?",
                (self._scope, period, self._holder),
            ).fetchone()
            others = float(claimed) - float(mine)
            room = max(0.0, limit - committed - others - keep)
            claim = keep + min(want, room)
            if claim > 0:
                db.execute(
                    "INSERT INTO budget_claims (scope, period, holder, host, pid, amount, updated) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (scope, period, holder) DO UPDATE "
                    "SET amount = excluded.amount, updated = excluded.updated",
                    (
                        self._scope,
                        period,
                        self._holder,
                        self._host,
                        os.getpid(),
                        claim,
                        time.time(),
                    ),
                )
            else:
                db.execute(
                    "DELETE FROM budget_claims WHERE scope=? AND period=? AND holder=?",
                    (self._scope, period, self._holder),
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return claim, committed, others

    def spent(self, period: str) -> tuple[float, float, float]:
        """(committed, of which uncertain, claimed by live processes) for ``period``."""
        with self._lock:
            return self._totals(period)

    def fire_once(self, period: str, threshold: float) -> bool:
        """Whether this call is the first to fire ``threshold`` in ``period``."""
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO budget_alerts (scope, period, threshold, fired) "
                "VALUES (?, ?, ?, ?)",
                (self._scope, period, threshold, time.time()),
            )
            return cursor.rowcount == 1


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class BudgetAccount:
    """A :class:`Budget` at work in one process: reservations, settlements, alerts.

    In memory without a ledger (the whole limit is this process's); with one, the
    allowance is claimed in chunks. Not thread-safe: one event loop uses it.
    """

    def __init__(self, budget: Budget, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.budget = budget
        self.limit = float(budget.limit_usd)
        self._clock = clock
        path = budget.ledger_path()
        url = budget.ledger_url
        self._ledger: _Ledger | RedisLedger | None = None
        if url is not None:
            from ._budget_redis import RedisLedger

            self._ledger = RedisLedger(url, budget.name)
        elif path is not None:
            self._ledger = _Ledger(path, budget.name)
        #: Where the spending persists (a file, a Redis URL without its password).
        self.where = None if self._ledger is None else str(self._ledger.path)
        self._period = budget.period_key()
        #: Allowance this process may use: the whole limit without a ledger.
        self._allowance = self.limit if self._ledger is None else 0.0
        #: Spending of other processes and earlier runs (read from the ledger).
        self._base = 0.0
        self.reserved = 0.0
        self.outstanding = 0
        #: Settled this session (known costs), and charged at worst case (unknown).
        self.spent = 0.0
        self.uncertain = 0.0
        #: Of the above, not yet written back to the ledger.
        self._unflushed = 0.0
        self._unflushed_uncertain = 0.0
        self._flushed_at = clock()
        self.exhausted = False
        self.refused = 0
        self._fired: set[float] = set()
        self._settled = anyio.Event()
        #: Reservations waiting for a settlement (the event is set only for them).
        self._waiting = 0
        #: Total spending at which the next unfired alert is due (inf: none left).
        self._next_alert = self._due()
        self._claiming = anyio.Lock()
        #: What other live processes hold claimed (as last read from the ledger).
        self._others = 0.0
        if self._ledger is not None:  # the first chunk, so the first request need not wait
            self._apply(self._exchange_now(self.limit * _CHUNK))

    # -- the hot path ----------------------------------------------------------------

    @property
    def _used(self) -> float:
        return self.reserved + self._unflushed + self._unflushed_uncertain

    def try_reserve(self, amount: float) -> Hold | None:
        """A hold of ``amount`` if it fits now (no I/O); ``None`` otherwise."""
        if not self.exhausted and self._used + amount <= self._allowance:
            self.reserved += amount
            self.outstanding += 1
            return Hold(amount)
        return None

    async def reserve(self, amount: float) -> Hold:
        """A hold of ``amount``: at once if it fits, after outstanding holds settle
        if that may make it fit; :class:`BudgetExceededError` when it cannot."""
        others_waits = 0
        while True:
            hold = self.try_reserve(amount)
            if hold is not None:
                return hold
            if self.exhausted:
                raise self._error(amount)
            if self._ledger is not None:
                await self._claim(amount)
                hold = self.try_reserve(amount)
                if hold is not None:
                    return hold
            if self.outstanding == 0:
                if (
                    self._ledger is not None
                    and self._others > 0
                    and self.total_spent + amount <= self.limit
                    and others_waits < _OTHERS_WAITS
                ):
                    # it fits in what other processes hold: they give back what they
                    # do not need at their next write-back (every second); not forever,
                    # two processes may each hold a chunk the other needs
                    others_waits += 1
                    await anyio.sleep(_FLUSH_EVERY)
                    continue
                raise self.refuse(amount)
            self._waiting += 1
            try:
                await self._settled.wait()
            finally:
                self._waiting -= 1

    async def room(self, want: float) -> float:
        """USD that can be reserved now (claiming up to ``want`` from the ledger
        first); 0 once exhausted. For work reserved as a whole (a provider batch)."""
        if self.exhausted:
            return 0.0
        if self._ledger is not None and self._used + want > self._allowance:
            await self._claim(want)
        return max(0.0, self._allowance - self._used)

    def force_reserve(self, amount: float) -> Hold:
        """A hold for spending already committed elsewhere (a provider batch submitted
        by an earlier run): counted whether or not it fits."""
        self.reserved += amount
        self.outstanding += 1
        return Hold(amount)

    def refuse(self, amount: float) -> BudgetExceededError:
        """Mark the budget exhausted; the error for a request of ``amount`` USD."""
        if not self.exhausted:
            self.exhausted = True
            log.warning(
                "budget_exhausted",
                limit_usd=self.limit,
                spent_usd=round(self.total_spent, 6),
                needed_usd=round(amount, 6),
            )
        return self._error(amount)

    def _error(self, amount: float) -> BudgetExceededError:
        self.refused += 1
        spent = self.total_spent
        period = "" if self.budget.period is None else f" for {self._period}"
        return BudgetExceededError(
            f"budget of ${self.limit:,.4f}{period} reached: ${spent:,.4f} spent "
            f"(${self.total_uncertain:,.4f} of it uncertain), and this request's worst case "
            f"(${amount:,.6f}) does not fit; nothing more is sent. Raise the limit "
            "(Budget(limit_usd=...), --budget USD) or lower max_tokens",
            limit_usd=self.limit,
            spent_usd=spent,
            needed_usd=amount,
        )

    def settle(self, hold: Hold, cost: float | None) -> None:
        """The call behind ``hold`` ended: it cost ``cost`` (USD), or ``None`` when
        that is unknown (it stays charged at its worst case, as uncertain)."""
        if hold.settled:
            return
        hold.settled = True
        self.outstanding -= 1
        # nothing outstanding: exactly 0, not the rounding residue of many sums
        self.reserved = self.reserved - hold.amount if self.outstanding else 0.0
        if cost is None:
            self.uncertain += hold.amount
            self._unflushed_uncertain += hold.amount
        else:
            if cost > hold.amount * (1 + 1e-9) + 1e-12:
                log.warning(
                    "budget_worst_case_exceeded",
                    reserved_usd=hold.amount,
                    cost_usd=cost,
                )
            self.spent += cost
            self._unflushed += cost
        if self._waiting:
            self._settled.set()
            self._settled = anyio.Event()
        if self._base + self.spent + self.uncertain >= self._next_alert:
            self._check_alerts()

    def release(self, hold: Hold) -> None:
        """Nothing was spent (the call was never sent)."""
        self.settle(hold, 0.0)

    # -- totals, alerts, the ledger ----------------------------------------------------

    @property
    def total_spent(self) -> float:
        """Spent in this budget's period, by every process (as last read), with the
        uncertain charges."""
        return self._base + self.spent + self.uncertain

    @property
    def total_uncertain(self) -> float:
        return self.uncertain

    def _due(self) -> float:
        for threshold in self.budget.alerts:
            if threshold not in self._fired:
                return threshold * self.limit
        return math.inf

    def _check_alerts(self) -> None:
        fraction = self.total_spent / self.limit
        for threshold in self.budget.alerts:
            if fraction < threshold:
                break
            if threshold in self._fired:
                continue
            self._fired.add(threshold)
            if self._ledger is not None:
                try:
                    first = self._ledger.fire_once(self._period, threshold)
                except ConfigurationError as exc:  # the ledger is down: fire it here
                    log.warning("budget_alert_not_recorded", error=str(exc))
                    first = True
                if not first:
                    continue  # another process (or an earlier run) fired it this period
            alert = BudgetAlert(threshold, self.total_spent, self.limit, self.budget.period)
            log.warning(
                "budget_alert",
                threshold=threshold,
                spent_usd=round(alert.spent_usd, 6),
                limit_usd=self.limit,
                period=self._period if self.budget.period else None,
            )
            if self.budget.on_alert is not None:
                try:
                    self.budget.on_alert(alert)
                except Exception as exc:  # a user's callback must not fail a request
                    log.error("budget_alert_callback_failed", error=repr(exc))
        self._next_alert = self._due()

    def _exchange_now(self, amount: float) -> tuple[float, float, float, float, float]:
        """One ledger exchange from the current figures (blocking), making room for a
        new reservation of ``amount`` (0: just write back). Returns what was reported
        (spent, uncertain) and the ledger's answer (allowance, committed, others'
        claims).

        The claim kept is at most what is reserved plus one chunk: a process gives
        back what it does not need at each write-back, so another one can use it."""
        ledger = self._ledger
        assert ledger is not None
        spent = self._unflushed + self._unflushed_uncertain
        uncertain = self._unflushed_uncertain
        chunk = self.limit * _CHUNK
        keep = max(0.0, min(self._allowance - spent, self.reserved + chunk))
        want = max(self.reserved + amount - keep, chunk) if amount else 0.0
        allowance, committed, others = ledger.exchange(
            self._period, self.limit, want, spent, uncertain, keep
        )
        return spent, uncertain, allowance, committed, others

    def _apply(self, result: tuple[float, float, float, float, float]) -> None:
        """Take a ledger exchange's answer; spending settled meanwhile stays unflushed."""
        spent, uncertain, allowance, committed, others = result
        self._others = others
        self._unflushed -= spent - uncertain
        self._unflushed_uncertain -= uncertain
        # the claim covers what is reserved and what settled since the report
        self._allowance = allowance
        self._base = (
            committed
            - (self.spent + self.uncertain)
            + (self._unflushed + self._unflushed_uncertain)
        )
        self._flushed_at = self._clock()

    async def _claim(self, amount: float) -> None:
        """Write back what was spent and claim up to ``want`` plus a chunk more, in a
        worker thread (the ledger may be busy with other processes)."""
        async with self._claiming:
            if self._ledger is None:
                return
            if amount and self._used + amount <= self._allowance:
                return  # another waiter claimed enough meanwhile
            period = self.budget.period_key()
            if period != self._period:
                await self._roll(period)
            # the figures are read in the thread; _apply subtracts exactly what it reported
            self._apply(await anyio.to_thread.run_sync(self._exchange_now, amount))

    async def _roll(self, period: str) -> None:
        """A new day or month: report the old period's spending (and give its
        allowance back), start the new one afresh."""
        ledger = self._ledger
        assert ledger is not None
        spent = self._unflushed + self._unflushed_uncertain
        uncertain = self._unflushed_uncertain
        old = self._period
        await anyio.to_thread.run_sync(ledger.exchange, old, self.limit, 0.0, spent, uncertain, 0.0)
        self._unflushed -= spent - uncertain
        self._unflushed_uncertain -= uncertain
        self._period = period
        self._allowance = 0.0
        self.spent = self._unflushed
        self.uncertain = self._unflushed_uncertain
        self._base = 0.0
        self._fired.clear()
        self._next_alert = self._due()
        self.exhausted = False

    async def flush(self) -> None:
        """Write back spending now, keeping the allowance (a no-op without a ledger)."""
        if self._ledger is not None:
            await self._claim(0.0)

    def close(self) -> None:
        """Write back and give the unused allowance back to the ledger."""
        ledger = self._ledger
        if ledger is None:
            return
        self._ledger = None
        try:
            spent = self._unflushed + self._unflushed_uncertain
            # holds still outstanding at close were cancelled in flight: uncertain
            pending = self.reserved
            ledger.exchange(
                self._period,
                self.limit,
                0.0,
                spent + pending,
                self._unflushed_uncertain + pending,
                0.0,
            )
        finally:
            ledger.close()

    def snapshot(self) -> dict[str, Any]:
        """The account, for metrics and reports."""
        return {
            "limit_usd": self.limit,
            "spent_usd": self.total_spent,
            "session_spent_usd": self.spent + self.uncertain,
            "uncertain_usd": self.uncertain,
            "reserved_usd": self.reserved,
            "outstanding": self.outstanding,
            "period": self._period if self.budget.period else None,
            "exhausted": self.exhausted,
            "refused": self.refused,
            "alerts_fired": sorted(self._fired),
            "ledger": self.where,
        }

    async def run_flusher(self) -> None:
        """Write back spending every second while the Synth is open (a task)."""
        while self._ledger is not None:
            await anyio.sleep(_FLUSH_EVERY)
            try:
                await self.flush()
            except ConfigurationError as exc:
                # the claimed allowance stays usable (nothing is overspent); the
                # spending is written back with the next flush that gets through
                log.warning("budget_flush_failed", error=str(exc))
