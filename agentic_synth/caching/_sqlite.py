"""The persistent tier: one SQLite file in WAL mode, written by one group-committing thread.

Resume depends on it, so a ``put`` returns only once its entry is committed, and
the file must survive SIGKILL at any moment. What that takes:

* **one writer thread** with its own connection. ``put`` queues the entry and
  awaits its commit; the writer takes everything queued (up to ``batch_size``
  entries, waiting up to ``linger`` seconds for more) and commits it as one
  transaction. One commit per write caps out near 12k writes/s; batching lifts
  that (``benchmarks/bench_cache_tiers.py`` measures both);
* first write wins: ``INSERT OR IGNORE`` on a UNIQUE key column of a rowid table
  (smaller and faster than ``WITHOUT ROWID`` for kilobyte values). An *expired*
  entry does not count as present: a put replaces it;
* the entry count and byte total live in a one-row ``meta`` table updated in the
  same transaction as the rows, so they are right after a crash and opening a
  store of millions of entries reads one row instead of counting;
* WAL with ``synchronous=NORMAL`` survives a crash of the process (``"full"``
  fsyncs each commit and survives power loss too). A torn WAL tail is a
  transaction SQLite never saw committed and discards whole on open;
* the writer runs ``wal_checkpoint(PASSIVE)`` after every ``checkpoint_bytes``
  written and ``journal_size_limit`` trims the WAL file, so it cannot grow
  without bound;
* reads run on the caller's thread through a second connection: a point lookup
  on the unique index takes microseconds, less than handing it to a worker
  thread would (measured in the benchmark). WAL readers never wait for the
  writer.

No size-based eviction, ever: an evicted entry would be a provider call repaid
on resume.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio

from .._log import get_logger
from ._base import TierStats

__all__ = ["SQLiteTier"]

log = get_logger("agentic_synth.caching")

#: Written to ``PRAGMA user_version``; a file with another version is refused.
_FORMAT = 1

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS entries ("
    " id INTEGER PRIMARY KEY,"
    " key BLOB NOT NULL UNIQUE,"
    " value BLOB NOT NULL,"
    " expires REAL)",  # wall-clock epoch seconds; NULL: never
    "CREATE TABLE IF NOT EXISTS meta ("
    " id INTEGER PRIMARY KEY CHECK (id = 0),"
    " entries INTEGER NOT NULL,"
    " bytes INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO meta VALUES (0, 0, 0)",
)

_INSERT = "INSERT OR IGNORE INTO entries (key, value, expires) VALUES (?, ?, ?)"
_EXPIRED_SIZE = "SELECT length(value) FROM entries WHERE key = ? AND expires <= ?"
_REPLACE = "UPDATE entries SET value = ?, expires = ? WHERE key = ?"
_COUNT = "UPDATE meta SET entries = entries + ?, bytes = bytes + ? WHERE id = 0"
_SELECT = "SELECT value, expires FROM entries WHERE key = ?"
_PAGE = "SELECT id, key, value, expires FROM entries WHERE id > ? ORDER BY id LIMIT 1024"

Durability = Literal["normal", "full"]


@dataclass(slots=True)
class _Put:
    key: bytes
    value: bytes
    expires: float | None
    future: asyncio.Future[None]


@dataclass(slots=True)
class _Task:
    """Work other than a put, run by the writer between batches."""

    run: Callable[[sqlite3.Connection], Any]
    done: concurrent.futures.Future[Any]


_STOP = object()


class SQLiteTier:
    """Entries in the SQLite file ``path`` (created if missing), for resume.

    ``ttl`` is the longest an entry lives (``None``: for ever); a put's own
    ``ttl`` can only shorten it. Expiry is measured on ``clock`` (wall-clock
    epoch seconds: entries outlive the process).
    """

    name = "sqlite"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: Durability = "normal",
        ttl: float | None = None,
        clock: Callable[[], float] = time.time,
        batch_size: int = 256,
        linger: float = 0.0,
        checkpoint_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        if durability not in ("normal", "full"):
            raise ValueError("durability must be 'normal' or 'full'")
        if ttl is not None and not ttl > 0:
            raise ValueError("ttl must be > 0 seconds or None")
        if batch_size < 1 or linger < 0 or checkpoint_bytes < 1:
            raise ValueError("batch_size >= 1, linger >= 0 and checkpoint_bytes >= 1 required")
        self.path = Path(path)
        self.durability = durability
        self.ttl = ttl
        self._clock = clock
        self._batch_size = batch_size
        self._linger = linger
        self._checkpoint_bytes = checkpoint_bytes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._reader = self._open(create=True)
        self._entries, self._bytes = self._reader.execute(
            "SELECT entries, bytes FROM meta WHERE id = 0"
        ).fetchone()
        self._reader.execute("PRAGMA query_only = 1")
        self._queue: queue.SimpleQueue[_Put | _Task | object] = queue.SimpleQueue()
        self._closed = False
        self._failure: BaseException | None = None
        self._hits = self._misses = self._writes = self._ignored = self._errors = 0
        self._commits = self._checkpoints = 0
        self._written_since_checkpoint = 0
        self._ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._writer = threading.Thread(
            target=self._write_loop, name=f"synth-sqlite-writer:{self.path.name}", daemon=True
        )
        self._writer.start()
        self._ready.result()  # the writer's connection opened (or its error, raised here)

    # -- CacheTier -----------------------------------------------------------

    async def get(self, key: bytes) -> bytes | None:
        if self._closed:
            raise anyio.ClosedResourceError
        row = self._reader.execute(_SELECT, (key,)).fetchone()
        if row is None or (row[1] is not None and row[1] <= self._clock()):
            self._misses += 1
            return None
        self._hits += 1
        value: bytes = row[0]
        return value

    async def put(self, key: bytes, value: bytes, *, ttl: float | None = None) -> None:
        """Queue the entry and return once its transaction has committed."""
        if self._closed:
            raise anyio.ClosedResourceError
        if self._failure is not None:
            raise self._failure
        if type(key) is not bytes or type(value) is not bytes:  # would fail its whole batch
            raise TypeError("cache keys and values are bytes")
        limit = self.ttl if ttl is None else ttl if self.ttl is None else min(ttl, self.ttl)
        expires = None if limit is None else self._clock() + limit
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put(_Put(key, value, expires, future))
        if self._failure is not None and not future.done():  # the writer died meanwhile
            future.set_exception(self._failure)
        await future

    async def delete(self, key: bytes) -> None:
        await self._submit(lambda conn: self._delete(conn, key))

    async def clear(self) -> int:
        count: int = await self._submit(self._clear)
        return count

    def stats(self) -> TierStats:
        return TierStats(
            name=self.name,
            entries=self._entries,
            bytes=self._bytes,
            hits=self._hits,
            misses=self._misses,
            writes=self._writes,
            errors=self._errors,
            extra={
                "path": str(self.path),
                "durability": self.durability,
                "ignored": self._ignored,
                "commits": self._commits,
                "checkpoints": self._checkpoints,
                "queued": self._queue.qsize(),
            },
        )

    async def aclose(self) -> None:
        """Commit what is queued, checkpoint and truncate the WAL, close the file."""
        if self._closed:
            return
        done = self._stop()
        await asyncio.wrap_future(done)
        self._reader.close()

    def close(self) -> None:
        """:meth:`aclose` for callers without an event loop (the CLI)."""
        if self._closed:
            return
        self._stop().result()
        self._reader.close()

    # -- maintenance ---------------------------------------------------------

    async def checkpoint(self) -> int:
        """Copy the WAL into the database file and truncate it; returns the WAL
        bytes freed (for ``Synth.optimize()``)."""
        freed: int = await self._submit(self._truncate_wal)
        return freed

    async def purge_expired(self) -> int:
        """Delete every expired entry (a full scan); returns how many."""
        purged: int = await self._submit(self._purge)
        return purged

    async def vacuum(self) -> None:
        """Rebuild the file to give the space of deleted entries back to the disk."""
        await self._submit(lambda conn: conn.execute("VACUUM"))

    def items(self) -> Iterator[tuple[str, bytes]]:
        """``(key as hex, value)`` of every live entry in insertion order, for
        ``synth cache export``. Reads committed entries through its own connection
        in pages, so it holds no long read transaction (the WAL keeps being
        checkpointed while it runs)."""
        conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            last = 0
            while True:
                rows = conn.execute(_PAGE, (last,)).fetchall()
                if not rows:
                    return
                now = self._clock()
                for _, key, value, expires in rows:
                    if expires is None or expires > now:
                        yield key.hex(), value
                last = rows[-1][0]
        finally:
            conn.close()

    # -- the caller's side of the writer -------------------------------------

    def _submit(self, run: Callable[[sqlite3.Connection], Any]) -> asyncio.Future[Any]:
        if self._closed:
            raise anyio.ClosedResourceError
        if self._failure is not None:
            raise self._failure
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._queue.put(_Task(run, done))
        return asyncio.wrap_future(done)

    def _stop(self) -> concurrent.futures.Future[Any]:
        self._closed = True
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._queue.put(_Task(self._close_writer, done))
        self._queue.put(_STOP)
        return done

    def _open(self, *, create: bool) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=5.0
        )
        try:
            if create:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version not in (0, _FORMAT):
                    raise ValueError(
                        f"{self.path}: cache format {version}, this version reads {_FORMAT}"
                    )
                if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] != "wal":
                    raise ValueError(f"{self.path}: cannot use WAL mode here")
                conn.execute("BEGIN IMMEDIATE")
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {_FORMAT}")
                conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        return conn

    # -- the writer thread ---------------------------------------------------

    def _write_loop(self) -> None:
        try:
            conn = self._open(create=False)
            conn.execute(f"PRAGMA synchronous = {self.durability.upper()}")
            conn.execute("PRAGMA wal_autocheckpoint = 0")  # ours, off the commit path
            conn.execute(f"PRAGMA journal_size_limit = {self._checkpoint_bytes}")
        except BaseException as exc:
            self._ready.set_exception(exc)
            return
        self._ready.set_result(None)
        held: _Put | _Task | object | None = None
        try:
            while True:
                item = self._queue.get() if held is None else held
                held = None
                if isinstance(item, _Put):
                    batch = [item]
                    held = self._gather(batch)
                    self._commit(conn, batch)
                elif isinstance(item, _Task):
                    self._run_task(conn, item)
                else:
                    return
        except BaseException as exc:  # a bug: fail every waiter rather than hang it
            self._failure = exc
            log.error("sqlite cache writer stopped", path=str(self.path), exc_info=True)
            self._fail_pending(exc, held)
        finally:
            conn.close()

    def _gather(self, batch: list[_Put]) -> _Put | _Task | object | None:
        """Add queued puts to ``batch`` up to the batch size; returns the first
        other item taken from the queue (it runs after this batch)."""
        deadline = time.monotonic() + self._linger if self._linger else 0.0
        while len(batch) < self._batch_size:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                wait = deadline - time.monotonic() if deadline else 0.0
                if wait <= 0:
                    return None
                try:
                    item = self._queue.get(timeout=wait)
                except queue.Empty:
                    return None
            if not isinstance(item, _Put):
                return item
            batch.append(item)
        return None

    def _commit(self, conn: sqlite3.Connection, batch: list[_Put]) -> None:
        now = self._clock()
        inserted = added = 0
        try:
            conn.execute("BEGIN IMMEDIATE")
            cur = conn.cursor()
            for put in batch:
                cur.execute(_INSERT, (put.key, put.value, put.expires))
                if cur.rowcount == 1:
                    inserted += 1
                    added += len(put.value)
                    continue
                # Present: keep it, unless it expired (an expired entry is absent).
                row = cur.execute(_EXPIRED_SIZE, (put.key, now)).fetchone()
                if row is not None:
                    cur.execute(_REPLACE, (put.value, put.expires, put.key))
                    added += len(put.value) - row[0]
            if inserted or added:
                cur.execute(_COUNT, (inserted, added))
            conn.execute("COMMIT")
        except Exception as exc:
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            self._errors += 1
            log.warning("sqlite cache commit failed", path=str(self.path), error=str(exc))
            _settle(batch, exc)
            return
        self._entries += inserted
        self._bytes += added
        self._writes += inserted
        self._ignored += len(batch) - inserted
        self._commits += 1
        _settle(batch, None)
        self._written_since_checkpoint += sum(len(p.value) for p in batch)
        if self._written_since_checkpoint >= self._checkpoint_bytes:
            self._written_since_checkpoint = 0
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                self._checkpoints += 1
            except sqlite3.Error as exc:  # the WAL just grows until the next one
                self._errors += 1
                log.warning("sqlite cache checkpoint failed", path=str(self.path), error=str(exc))

    def _run_task(self, conn: sqlite3.Connection, task: _Task) -> None:
        if not task.done.set_running_or_notify_cancel():
            return
        try:
            result = task.run(conn)
        except BaseException as exc:
            if isinstance(exc, sqlite3.Error):
                self._errors += 1
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            task.done.set_exception(exc)
        else:
            task.done.set_result(result)

    def _fail_pending(self, exc: BaseException, held: object) -> None:
        items = [held]
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        _settle([i for i in items if isinstance(i, _Put)], exc)
        for item in items:
            if isinstance(item, _Task) and item.done.set_running_or_notify_cancel():
                item.done.set_exception(exc)

    # -- work the writer runs between batches --------------------------------

    def _delete(self, conn: sqlite3.Connection, key: bytes) -> None:
        conn.execute("BEGIN IMMEDIATE")
        row = conn.execute(
            "DELETE FROM entries WHERE key = ? RETURNING length(value)", (key,)
        ).fetchone()
        if row is not None:
            conn.execute(_COUNT, (-1, -row[0]))
        conn.execute("COMMIT")
        if row is not None:
            self._entries -= 1
            self._bytes -= row[0]

    def _clear(self, conn: sqlite3.Connection) -> int:
        conn.execute("BEGIN IMMEDIATE")
        count: int = conn.execute("SELECT entries FROM meta WHERE id = 0").fetchone()[0]
        conn.execute("DELETE FROM entries")
        conn.execute("UPDATE meta SET entries = 0, bytes = 0 WHERE id = 0")
        conn.execute("COMMIT")
        self._entries = self._bytes = 0
        return count

    def _purge(self, conn: sqlite3.Connection) -> int:
        now = self._clock()
        conn.execute("BEGIN IMMEDIATE")
        count, size = conn.execute(
            "SELECT count(*), coalesce(sum(length(value)), 0) FROM entries WHERE expires <= ?",
            (now,),
        ).fetchone()
        if count:
            conn.execute("DELETE FROM entries WHERE expires <= ?", (now,))
            conn.execute(_COUNT, (-count, -size))
        conn.execute("COMMIT")
        self._entries -= count
        self._bytes -= size
        return int(count)

    def _truncate_wal(self, conn: sqlite3.Connection) -> int:
        wal = self.path.with_name(self.path.name + "-wal")
        before = _size(wal)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        self._checkpoints += 1
        self._written_since_checkpoint = 0
        return max(0, before - _size(wal))

    def _close_writer(self, conn: sqlite3.Connection) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._truncate_wal(conn)
        conn.close()


def _settle(batch: list[_Put], exc: BaseException | None) -> None:
    """Resolve the puts' futures on their event loops, one wake-up per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for put in batch:
        by_loop.setdefault(put.future.get_loop(), []).append(put.future)
    for loop, futures in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
            loop.call_soon_threadsafe(_resolve, futures, exc)


def _resolve(futures: list[asyncio.Future[None]], exc: BaseException | None) -> None:
    for future in futures:
        if not future.done():
            if exc is None:
                future.set_result(None)
            else:
                future.set_exception(exc)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
