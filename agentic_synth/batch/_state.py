"""The batch job's state: one SQLite file (WAL) of jobs, their batches and every item.

What a crash must not lose is written before the next step depends on it:

* an *intent* row for a batch (and its items' assignment to it) is committed
  before ``submit`` is called, and the batch id the moment ``submit`` returns;
* each collected result (the paid Completion, in the response cache's own
  encoding, :class:`~agentic_synth.caching.CachedResult`) is committed before it
  is stored in the cache or handed back.

The window left: the provider accepted a batch and the process died before its
id was written. A restart then finds an intent without an id; it cannot know
whether the provider has that batch (Anthropic's batches carry no metadata to
look it up by), so those items are submitted again, and the run says so.

Writes are ``synchronous=FULL`` (a batch id survives power loss too); results
are written a chunk per transaction. The file never holds an API key: a
deployment is recorded by provider, model and base URL only.

A lock (pid, host, token) in the job's row keeps two live processes off one job;
a lock whose pid is gone (on this host) is taken over.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .._exceptions import ConfigurationError
from ._errors import BatchJobBusyError

__all__ = [
    "BatchRow",
    "ItemRow",
    "ItemUpdate",
    "JobRow",
    "Outcome",
    "StateStore",
    "default_state_path",
]

_SCHEMA_VERSION = "1"

#: ``pending``: to be submitted; ``submitted``: in a batch (``seq``); ``succeeded``:
#: result stored; ``failed``: error stored (a rerun of the job tries it again);
#: ``canceled``: the job was canceled before it ran (a rerun tries it again).
Outcome = Literal["pending", "submitted", "succeeded", "failed", "canceled"]
#: ``intent``: about to be submitted (no id yet); ``running``/``canceling``: at the
#: provider; ``ended``/``failed``: at the provider, results not read yet;
#: ``collected``: every result read; ``lost``: an intent found by a restart.
BatchRowStatus = Literal["intent", "running", "canceling", "ended", "failed", "collected", "lost"]
JobStatus = Literal["running", "done", "canceled"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs(
    job_id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    models TEXT NOT NULL,
    model TEXT NOT NULL,
    provider TEXT NOT NULL,
    deployment TEXT NOT NULL,
    total INTEGER NOT NULL,
    status TEXT NOT NULL,
    lock_pid INTEGER,
    lock_host TEXT,
    lock_token TEXT,
    lock_at REAL
);
CREATE TABLE IF NOT EXISTS batches(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    batch_id TEXT UNIQUE,
    provider TEXT NOT NULL,
    deployment TEXT NOT NULL,
    model TEXT NOT NULL,
    round INTEGER NOT NULL,
    status TEXT NOT NULL,
    items INTEGER NOT NULL,
    processing INTEGER NOT NULL DEFAULT 0,
    succeeded INTEGER NOT NULL DEFAULT 0,
    errored INTEGER NOT NULL DEFAULT 0,
    canceled INTEGER NOT NULL DEFAULT 0,
    expired INTEGER NOT NULL DEFAULT 0,
    intent_at REAL NOT NULL,
    submitted_at REAL,
    ended_at REAL,
    collected_at REAL,
    error TEXT
);
CREATE INDEX IF NOT EXISTS batches_job ON batches(job_id);
CREATE TABLE IF NOT EXISTS items(
    job_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    custom_id TEXT NOT NULL,
    seq INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    outcome TEXT NOT NULL,
    result BLOB,
    latency REAL,
    cost REAL,
    error_type TEXT,
    error TEXT,
    status INTEGER,
    error_model TEXT,
    label TEXT,
    PRIMARY KEY(job_id, idx)
) WITHOUT ROWID;
"""


def default_state_path() -> Path:
    """``$XDG_CACHE_HOME/agentic-synth/batches.sqlite``, else ``~/.cache/...``."""
    base = os.environ.get("XDG_CACHE_HOME") or ""
    root = Path(base) if base.strip() and os.path.isabs(base) else Path.home() / ".cache"
    return root / "agentic-synth" / "batches.sqlite"


@dataclass(slots=True)
class JobRow:
    job_id: str
    created_at: float
    updated_at: float
    models: list[str]
    model: str
    provider: str
    deployment: str
    total: int
    status: JobStatus
    lock_pid: int | None
    lock_host: str | None
    #: Counts of items by outcome, and USD spent on the collected results.
    outcomes: dict[str, int]
    spent: float


@dataclass(slots=True)
class BatchRow:
    seq: int
    job_id: str
    batch_id: str | None
    provider: str
    deployment: str
    model: str
    round: int
    status: BatchRowStatus
    items: int
    processing: int
    succeeded: int
    errored: int
    canceled: int
    expired: int
    intent_at: float
    submitted_at: float | None
    ended_at: float | None
    collected_at: float | None
    error: str | None


@dataclass(slots=True)
class ItemRow:
    idx: int
    custom_id: str
    seq: int | None
    attempts: int
    outcome: Outcome
    result: bytes | None
    latency: float | None
    cost: float | None
    error_type: str | None
    error: str | None
    status: int | None
    error_model: str | None
    label: Any


@dataclass(slots=True)
class ItemUpdate:
    """What became of one item: a result, an error, or back to pending."""

    idx: int
    outcome: Outcome
    result: bytes | None = None
    latency: float | None = None
    cost: float | None = None
    error_type: str | None = None
    error: str | None = None
    status: int | None = None
    error_model: str | None = None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # somebody else's process: alive
        return True
    return True


class StateStore:
    """The state file, opened by one process; methods are blocking (call them from a
    worker thread in async code) and safe to call from several threads."""

    def __init__(self, path: str | os.PathLike[str], *, flag: str = "batch_state") -> None:
        self.path = Path(path)
        self._flag = flag
        self._lock = threading.Lock()
        parent = self.path.parent
        if not parent.is_dir():
            raise ConfigurationError(
                f"{flag} {self.path}: directory {parent} does not exist; create it first"
            )
        if self.path.is_dir():
            raise ConfigurationError(f"{flag} {self.path} is a directory; name a file in it")
        try:
            self._db = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._db.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema', ?)", (_SCHEMA_VERSION,)
            )
            (version,) = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise ConfigurationError(
                f"{flag} {self.path} is not a batch state file ({exc}); name another file"
            ) from None
        if version != _SCHEMA_VERSION:
            self._db.close()
            raise ConfigurationError(
                f"{flag} {self.path} was written by another version of agentic-synth "
                f"(state format {version}); name another file"
            )

    @classmethod
    def open(
        cls, path: str | os.PathLike[str] | None = None, *, flag: str = "batch_state"
    ) -> StateStore:
        """``path``, or the default location (its directory created if missing)."""
        if path is None:
            path = default_state_path()
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        return cls(path, flag=flag)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _tx(self, fn: Any, *args: Any) -> Any:
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                out = fn(db, *args)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return out

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # -- jobs ------------------------------------------------------------------

    def begin_job(
        self,
        job_id: str,
        *,
        models: Sequence[str],
        model: str,
        provider: str,
        deployment: str,
        custom_ids: Sequence[str],
        labels: Sequence[Any] | None,
        now: float,
    ) -> bool:
        """Create the job and its items unless it exists; True when it is new."""

        def run(db: sqlite3.Connection) -> bool:
            row = db.execute("SELECT total FROM jobs WHERE job_id=?", (job_id,)).fetchone()
            if row is not None:
                if row[0] != len(custom_ids):
                    raise ConfigurationError(
                        f"{self._flag} {self.path}: job {job_id} has {row[0]} inputs there, "
                        f"not {len(custom_ids)}; the state file is damaged, name another one"
                    )
                db.execute(
                    "UPDATE jobs SET model=?, provider=?, deployment=?, updated_at=? "
                    "WHERE job_id=?",
                    (model, provider, deployment, now, job_id),
                )
                return False
            db.execute(
                "INSERT INTO jobs(job_id, created_at, updated_at, models, model, provider, "
                "deployment, total, status) VALUES (?,?,?,?,?,?,?,?, 'running')",
                (job_id, now, now, json.dumps(list(models)), model, provider, deployment,
                 len(custom_ids)),
            )  # fmt: skip
            db.executemany(
                "INSERT INTO items(job_id, idx, custom_id, outcome, label) "
                "VALUES (?,?,?, 'pending', ?)",
                (
                    (
                        job_id,
                        i,
                        cid,
                        None if labels is None else json.dumps(labels[i], default=str),
                    )
                    for i, cid in enumerate(custom_ids)
                ),
            )
            return True

        return bool(self._tx(run))

    def lock(self, job_id: str, *, flag_hint: str = "") -> str:
        """Take the job's lock for this process; :class:`BatchJobBusyError` while a live
        process holds it (a dead one's lock is taken over). Returns the token."""
        token = uuid.uuid4().hex
        host = socket.gethostname()
        pid = os.getpid()

        def run(db: sqlite3.Connection) -> None:
            row = db.execute(
                "SELECT lock_pid, lock_host FROM jobs WHERE job_id=?", (job_id,)
            ).fetchone()
            if row is None:
                raise ConfigurationError(f"no batch job {job_id} in {self.path}")
            held_pid, held_host = row
            if held_pid is not None:
                same_host = held_host == host
                if not same_host or _pid_alive(held_pid):
                    where = f"process {held_pid}" + ("" if same_host else f" on {held_host}")
                    raise BatchJobBusyError(
                        f"batch job {job_id} is being run by {where} (state file {self.path}); "
                        f"wait for it to finish, or stop it and run again{flag_hint}"
                    )
            db.execute(
                "UPDATE jobs SET lock_pid=?, lock_host=?, lock_token=?, lock_at=? WHERE job_id=?",
                (pid, host, token, time.time(), job_id),
            )

        self._tx(run)
        return token

    def unlock(self, job_id: str, token: str) -> None:
        self._tx(
            lambda db: db.execute(
                "UPDATE jobs SET lock_pid=NULL, lock_host=NULL, lock_token=NULL, lock_at=NULL "
                "WHERE job_id=? AND lock_token=?",
                (job_id, token),
            )
        )

    def locked_by(self, job_id: str) -> int | None:
        """The pid of a live process running the job (this one included, for a run in
        another task), if any; a lock from another host counts as live."""
        rows = self._read("SELECT lock_pid, lock_host FROM jobs WHERE job_id=?", (job_id,))
        if not rows or rows[0][0] is None:
            return None
        pid, host = rows[0]
        if host != socket.gethostname():
            return int(pid)
        return int(pid) if _pid_alive(pid) else None

    def set_job_status(self, job_id: str, status: JobStatus, now: float) -> None:
        self._tx(
            lambda db: db.execute(
                "UPDATE jobs SET status=?, updated_at=? WHERE job_id=?", (status, now, job_id)
            )
        )

    def job(self, job_id: str) -> JobRow | None:
        jobs = self.jobs(job_id)
        return jobs[0] if jobs else None

    def jobs(self, job_id: str | None = None) -> list[JobRow]:
        """Jobs, newest first (or the one named), with their items' counts and spend."""
        where, args = ("WHERE job_id=?", (job_id,)) if job_id is not None else ("", ())
        rows = self._read(
            "SELECT job_id, created_at, updated_at, models, model, provider, deployment, "
            f"total, status, lock_pid, lock_host FROM jobs {where} ORDER BY created_at DESC",
            args,
        )
        out: list[JobRow] = []
        for r in rows:
            counts = self._read(
                "SELECT outcome, COUNT(*), COALESCE(SUM(cost), 0) FROM items "
                "WHERE job_id=? GROUP BY outcome",
                (r[0],),
            )
            out.append(
                JobRow(
                    r[0], r[1], r[2], json.loads(r[3]), r[4], r[5], r[6], r[7], r[8], r[9], r[10],
                    {c[0]: c[1] for c in counts}, float(sum(c[2] for c in counts)),
                )
            )  # fmt: skip
        return out

    # -- items -----------------------------------------------------------------

    def items(self, job_id: str) -> list[ItemRow]:
        rows = self._read(
            "SELECT idx, custom_id, seq, attempts, outcome, result, latency, cost, error_type, "
            "error, status, error_model, label FROM items WHERE job_id=? ORDER BY idx",
            (job_id,),
        )
        return [
            ItemRow(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                r[6],
                r[7],
                r[8],
                r[9],
                r[10],
                r[11],
                None if r[12] is None else json.loads(r[12]),
            )
            for r in rows
        ]

    def retry_unfinished(self, job_id: str, now: float) -> int:
        """A rerun wants every input: failed and canceled items become pending again
        (their attempts so far are kept). Returns how many."""

        def run(db: sqlite3.Connection) -> int:
            cur = db.execute(
                "UPDATE items SET outcome='pending', seq=NULL WHERE job_id=? "
                "AND outcome IN ('failed', 'canceled')",
                (job_id,),
            )
            db.execute(
                "UPDATE jobs SET status='running', updated_at=? WHERE job_id=?", (now, job_id)
            )
            return int(cur.rowcount)

        return int(self._tx(run))

    def record(self, job_id: str, updates: Iterable[ItemUpdate]) -> None:
        """Write what became of items, in one transaction. A stored result is never
        overwritten (the first answer paid for is the one kept)."""
        rows = [
            (
                u.outcome, u.result, u.latency, u.cost, u.error_type, u.error, u.status,
                u.error_model, job_id, u.idx,
            )
            for u in updates
        ]  # fmt: skip
        if not rows:
            return
        self._tx(
            lambda db: db.executemany(
                "UPDATE items SET outcome=?, result=?, latency=?, cost=?, error_type=?, error=?, "
                "status=?, error_model=?, seq=CASE WHEN ?1 IN ('pending') THEN NULL ELSE seq END "
                "WHERE job_id=? AND idx=? AND outcome != 'succeeded'",
                rows,
            )
        )

    # -- batches -----------------------------------------------------------------

    def add_intent(
        self,
        job_id: str,
        *,
        indices: Sequence[int],
        round: int,
        provider: str,
        deployment: str,
        model: str,
        now: float,
    ) -> int:
        """Before ``submit``: a batch row without an id, the items assigned to it and
        their attempts counted. Returns the row's ``seq``."""

        def run(db: sqlite3.Connection) -> int:
            cur = db.execute(
                "INSERT INTO batches(job_id, provider, deployment, model, round, status, items, "
                "processing, intent_at) VALUES (?,?,?,?,?, 'intent', ?, ?, ?)",
                (job_id, provider, deployment, model, round, len(indices), len(indices), now),
            )
            seq = int(cur.lastrowid or 0)
            db.executemany(
                "UPDATE items SET seq=?, outcome='submitted', attempts=attempts+1 "
                "WHERE job_id=? AND idx=?",
                ((seq, job_id, i) for i in indices),
            )
            return seq

        return int(self._tx(run))

    def set_submitted(self, seq: int, batch_id: str, now: float) -> None:
        """The moment ``submit`` returned: the provider's id, so a restart re-attaches."""
        self._tx(
            lambda db: db.execute(
                "UPDATE batches SET batch_id=?, status='running', submitted_at=? WHERE seq=?",
                (batch_id, now, seq),
            )
        )

    def drop_intent(self, job_id: str, seq: int, *, lost: bool) -> list[int]:
        """An intent that was not (or may not have been) submitted: its items go back to
        pending. ``lost``: found by a restart (kept, marked ``lost``, for the record);
        else the submit call failed and the row is deleted. Returns the items."""

        def run(db: sqlite3.Connection) -> list[int]:
            indices = [
                r[0]
                for r in db.execute(
                    "SELECT idx FROM items WHERE job_id=? AND seq=? AND outcome='submitted'",
                    (job_id, seq),
                )
            ]
            db.execute(
                "UPDATE items SET seq=NULL, outcome='pending' WHERE job_id=? AND seq=? "
                "AND outcome='submitted'",
                (job_id, seq),
            )
            if lost:
                db.execute("UPDATE batches SET status='lost' WHERE seq=?", (seq,))
            else:
                db.execute("DELETE FROM batches WHERE seq=?", (seq,))
            return indices

        result: list[int] = self._tx(run)
        return result

    def update_batch(
        self,
        seq: int,
        *,
        status: BatchRowStatus,
        counts: tuple[int, int, int, int, int] | None = None,
        ended_at: float | None = None,
        error: str | None = None,
    ) -> None:
        def run(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE batches SET status=?, ended_at=COALESCE(?, ended_at), "
                "error=COALESCE(?, error) WHERE seq=?",
                (status, ended_at, error, seq),
            )
            if counts is not None:
                db.execute(
                    "UPDATE batches SET processing=?, succeeded=?, errored=?, canceled=?, "
                    "expired=? WHERE seq=?",
                    (*counts, seq),
                )

        self._tx(run)

    def mark_collected(self, seq: int, now: float) -> None:
        self._tx(
            lambda db: db.execute(
                "UPDATE batches SET status='collected', collected_at=? WHERE seq=?", (now, seq)
            )
        )

    def batches(self, job_id: str) -> list[BatchRow]:
        rows = self._read(
            "SELECT seq, job_id, batch_id, provider, deployment, model, round, status, items, "
            "processing, succeeded, errored, canceled, expired, intent_at, submitted_at, "
            "ended_at, collected_at, error FROM batches WHERE job_id=? ORDER BY seq",
            (job_id,),
        )
        return [BatchRow(*r) for r in rows]

    def batch_items(self, job_id: str, seq: int) -> list[int]:
        """The items still waiting on batch ``seq``."""
        return [
            r[0]
            for r in self._read(
                "SELECT idx FROM items WHERE job_id=? AND seq=? AND outcome='submitted'",
                (job_id, seq),
            )
        ]
