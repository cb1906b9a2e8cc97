"""Files a dataset is written to as its rows arrive: JSONL, CSV and Parquet.

Every sink keeps three promises:

- **Nothing is destroyed early.** An existing file is untouched until the first
  row is ready (JSONL and CSV are emptied at the first write; Parquet is written to
  a temporary file beside the target and renamed over it when closed). A sink
  closed without a row because of an error leaves the old file as it was.
- **A stopped run leaves a readable file.** JSONL and CSV rows go out in one
  ``write`` each, so the file always ends on a whole row (a failed write is cut
  back to the last one). Parquet rows are buffered up to ``row_group_size`` and
  written a row group at a time; closing, also on Ctrl-C or cancellation reaching
  the ``with`` block, writes the footer with Ctrl-C held off, so the file is complete.
  (``kill -9`` cannot be caught: JSONL and CSV keep every written row, Parquet keeps
  the old file and leaves the temporary one behind.)
- **No whole-dataset buffer.** Memory stays flat however many rows are written.

Columns: CSV and Parquet have exactly ``columns``; a row key outside them is not
written and is named in :attr:`Sink.dropped_keys` (dotted for nested objects), so
the caller can warn. JSONL writes each row whole. Parquet's column types come from
the JSON Schema when one is given (see :func:`arrow_schema`), otherwise from the
first row group.
"""

from __future__ import annotations

import abc
import base64
import csv
import dataclasses
import enum
import importlib
import io
import json
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, time
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from .._exceptions import ConfigurationError, InvalidRequestError
from ._pointer import MISSING, follow_pointer

__all__ = [
    "DEFAULT_ROW_GROUP_SIZE",
    "SUPPORTED_SUFFIXES",
    "Sink",
    "arrow_schema",
    "open_sink",
    "rows_to_table",
    "schema_columns",
]

#: File suffixes and the format each one selects.
SUPPORTED_SUFFIXES: Final = (".jsonl", ".ndjson", ".csv", ".parquet")
#: Parquet rows held in memory before they are written as one row group. Measured
#: (benchmarks/bench_sinks.py, 12 columns): peak RSS the same for 100k and 1M rows
#: at 10,000 (groups of 1,000 grow it by the footer's per-group metadata and make
#: the file 2.5% larger); larger groups hold more Python objects for the collector.
DEFAULT_ROW_GROUP_SIZE: Final = 10_000
_INSTALL_HINT = "pip install 'agentic-synth[parquet]'"
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def open_sink(
    path: str | os.PathLike[str],
    columns: Sequence[str],
    *,
    schema: Mapping[str, Any] | None = None,
    append: bool = False,
    row_group_size: int = DEFAULT_ROW_GROUP_SIZE,
) -> Sink:
    """A sink for ``path``, the format chosen by its suffix (``.jsonl``/``.ndjson``,
    ``.csv``, ``.parquet``; case-insensitive).

    ``columns``: the layout (record fields, then attribute columns). ``schema``: the
    records' JSON Schema, for Parquet column types. ``append=True`` (resuming a run)
    keeps the rows already in the file: JSONL and CSV append (a trailing partial row
    left by a killed writer is cut off first; a CSV header must match ``columns``);
    Parquet cannot grow in place, so the existing row groups are copied into the new
    file before the first new row, and the old file is replaced when the sink closes
    (its layout must match). :attr:`Sink.rows_before` counts the rows kept.

    Raises ``InvalidRequestError`` for an unknown suffix or bad columns,
    ``ConfigurationError`` when the file cannot be written or pyarrow is missing.
    Checks happen here, before any row, and change no existing file (JSONL and CSV
    open it for appending; Parquet creates its temporary file beside it).
    """
    target = Path(os.fspath(path))
    suffix = target.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise InvalidRequestError(
            f"cannot tell the file format of {str(target)!r} from its suffix; "
            f"use one of {', '.join(SUPPORTED_SUFFIXES)}"
        )
    cols = _check_columns(columns)
    _check_target(target)
    if suffix == ".parquet":
        if row_group_size < 1:
            raise InvalidRequestError(f"row_group_size must be >= 1, got {row_group_size}")
        return _ParquetSink(target, cols, schema, append, row_group_size)
    if suffix == ".csv":
        return _CsvSink(target, cols, append)
    return _JsonlSink(target, cols, append)


class Sink(abc.ABC):
    """Where rows go, one at a time, as they arrive. Use as a context manager."""

    def __init__(self, path: Path, columns: tuple[str, ...]) -> None:
        self.path = path
        self.columns = columns
        #: Rows this sink wrote (rows already in an appended file not included).
        self.rows_written = 0
        #: Rows already in the file when it was opened with ``append=True``.
        self.rows_before = 0
        self._dropped: set[str] = set()
        self._closed = False

    @property
    def dropped_keys(self) -> frozenset[str]:
        """Row keys seen outside the layout and so not written (always empty for JSONL)."""
        return frozenset(self._dropped)

    @property
    def closed(self) -> bool:
        return self._closed

    def write(self, row: Mapping[str, Any]) -> None:
        """Write one row (a mapping of column to value; a missing key is null)."""
        if self._closed:
            raise InvalidRequestError(f"sink for {self.path} is closed")
        self._write(row)

    def write_many(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Write rows in order; cheaper than :meth:`write` per row (fewer system calls)."""
        if self._closed:
            raise InvalidRequestError(f"sink for {self.path} is closed")
        self._write_many(rows)

    def close(self, complete: bool | None = None) -> None:
        """Finish the file. ``complete=True``: the run ended, so even no row at all
        makes the new (empty) content. ``complete=False``: the run stopped; the rows
        written are kept, but with none an existing file is left as it was (and one
        this sink would have created is not). ``None`` (default): complete unless an
        exception is being handled where ``close`` is called (a ``finally`` or
        ``except`` block). Closing twice does nothing."""
        if self._closed:
            return
        if complete is None:
            complete = _no_exception_in_flight()
        self._closed = True
        self._close(complete)

    def __enter__(self) -> Sink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(complete=exc_type is None)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"<{type(self).__name__} {str(self.path)!r} {state} rows_written={self.rows_written}>"
        )

    @abc.abstractmethod
    def _write(self, row: Mapping[str, Any]) -> None: ...

    def _write_many(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            self._write(row)

    @abc.abstractmethod
    def _close(self, complete: bool) -> None: ...


def _no_exception_in_flight() -> bool:
    return sys.exc_info()[1] is None


def _check_columns(columns: Sequence[str]) -> tuple[str, ...]:
    if isinstance(columns, str):
        raise InvalidRequestError("columns must be a sequence of names, not one string")
    cols = tuple(columns)
    for name in cols:
        if not isinstance(name, str) or not name:
            raise InvalidRequestError(f"column names must be non-empty strings, got {name!r}")
    if len(set(cols)) != len(cols):
        dupes = sorted({c for c in cols if cols.count(c) > 1})
        raise InvalidRequestError(f"duplicate column names: {', '.join(dupes)}")
    return cols


def _check_target(target: Path) -> None:
    if target.is_dir():
        raise ConfigurationError(f"{target} is a directory; name a file in it")
    parent = target.absolute().parent
    if not parent.is_dir():
        raise ConfigurationError(f"cannot write {target}: directory {parent} does not exist")


def _os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


# ---------------------------------------------------------------------------------
# Values: JSON encoding shared by JSONL lines and JSON-in-a-cell


def _json_default(value: Any) -> Any:
    """What the standard encoder cannot do: dates as ISO 8601, enums by value,
    pydantic models and dataclasses as objects, bytes as base64, sets as lists."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, os.PathLike) or type(value).__name__ in ("UUID", "Decimal"):
        return str(value)
    raise TypeError(f"cannot write a {type(value).__name__} value as JSON: {value!r:.80}")


_dumps: Callable[[Any], str] = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), default=_json_default
).encode
#: JSONL lines keep the familiar ", " / ": " spacing of ``json.dumps``.
_dumps_line: Callable[[Any], str] = json.JSONEncoder(
    ensure_ascii=False, default=_json_default
).encode


# ---------------------------------------------------------------------------------
# Line formats: JSONL and CSV


class _LineSink(Sink):
    """A file written one whole line (row) per ``write``. At the first row the file
    is cut to what is kept (nothing, or an appended file's whole rows); a failed
    write is cut back to the last whole row."""

    _CHUNK = 1 << 16

    def __init__(self, path: Path, columns: tuple[str, ...], append: bool) -> None:
        super().__init__(path, columns)
        existed = os.path.lexists(path)
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | _CLOEXEC, 0o666)
        except OSError as exc:
            raise ConfigurationError(f"cannot write {path}: {_os_reason(exc)}") from None
        self._created = not existed
        self._started = False
        self._keep = 0  # bytes of the existing file kept at the first row
        self._lead = b""  # written after them (the newline a complete last row lacks)
        self._size = 0
        if append:
            try:
                self._keep, self.rows_before = self._scan()
            except BaseException:
                os.close(self._fd)
                raise

    def _read(self) -> Iterator[tuple[int, bytes]]:
        """The file's bytes in chunks, with their offsets."""
        pos = 0
        while chunk := os.pread(self._fd, self._CHUNK * 16, pos):
            yield pos, chunk
            pos += len(chunk)

    @abc.abstractmethod
    def _scan(self) -> tuple[int, int]:
        """(offset just past the last whole row, rows before it not counting a header)."""

    def _start(self) -> None:
        """Cut the file to what is kept just before the first row (never earlier)."""
        self._started = True
        os.ftruncate(self._fd, self._keep)
        self._size = self._keep
        if self._lead:
            self._emit(self._lead)
        if self._keep == 0:
            self._begin()

    def _begin(self) -> None:
        """Write what precedes the first row of an empty file (a CSV header)."""

    def _emit(self, data: bytes) -> None:
        """One ``write`` of whole rows; on failure the partial rows are cut off again."""
        if not self._started:
            self._start()
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            self._cut()
            raise ConfigurationError(f"cannot write {self.path}: {_os_reason(exc)}") from None
        except BaseException:
            self._cut()
            raise
        self._size += len(data)

    def _cut(self) -> None:
        try:
            os.ftruncate(self._fd, self._size)
        except OSError:
            pass

    def _close(self, complete: bool) -> None:
        try:
            if complete and not self._started:
                self._start()
        finally:
            os.close(self._fd)
            if self._created and not self._started:
                try:
                    os.unlink(self.path)
                except OSError:
                    pass


class _JsonlSink(_LineSink):
    """One JSON object per line, each row written (and so flushed) as it arrives."""

    def _scan(self) -> tuple[int, int]:
        """Rows end at newlines. Text after the last one is a row cut short, unless
        it parses as JSON (a writer that leaves out the last newline): then it stays,
        and the first new row starts on a line of its own."""
        end = rows = size = 0
        for pos, chunk in self._read():
            size = pos + len(chunk)
            i = chunk.rfind(b"\n")
            if i >= 0:
                end = pos + i + 1
                rows += chunk.count(b"\n")
        tail = os.pread(self._fd, size - end, end) if size > end else b""
        if tail.strip():
            try:
                json.loads(tail)
            except ValueError:
                return end, rows
            self._lead = b"\n"
            return size, rows + 1
        return end, rows

    def _write(self, row: Mapping[str, Any]) -> None:
        self._emit(_line(row).encode())
        self.rows_written += 1

    def _write_many(self, rows: Iterable[Mapping[str, Any]]) -> None:
        lines: list[str] = []
        size = 0
        try:
            for row in rows:
                line = _line(row)
                lines.append(line)
                size += len(line)
                if size >= self._CHUNK:
                    self._emit("".join(lines).encode())
                    self.rows_written += len(lines)
                    lines.clear()
                    size = 0
        finally:  # the rows before one that cannot be written still go out
            if lines:
                self._emit("".join(lines).encode())
                self.rows_written += len(lines)


def _line(row: Mapping[str, Any]) -> str:
    try:
        return _dumps_line(row if isinstance(row, dict) else dict(row)) + "\n"
    except (TypeError, ValueError) as exc:  # an unknown type, a cycle
        raise InvalidRequestError(f"a row cannot be written as JSON: {exc}") from None


class _CsvSink(_LineSink):
    """RFC 4180 CSV (UTF-8, ``\\n`` line ends, a header of ``columns``): None is an
    empty cell, booleans are ``true``/``false``, lists and objects are JSON text."""

    def __init__(self, path: Path, columns: tuple[str, ...], append: bool) -> None:
        self._parts: list[str] = []  # what the csv writer produced since the last emit
        self._writer = csv.writer(_Collector(self._parts), lineterminator="\n")
        self._known = frozenset(columns)
        super().__init__(path, columns, append)

    def _begin(self) -> None:
        self._writer.writerow(self.columns)
        self._emit(self._take())

    def _take(self) -> bytes:
        text = "".join(self._parts)
        self._parts.clear()
        return text.encode()

    def _cells(self, row: Mapping[str, Any]) -> list[Any]:
        if not self._known.issuperset(row):
            self._dropped.update(k for k in row if k not in self._known)
        try:
            return [v if type(v) in _AS_IS else _cell(v) for v in map(row.get, self.columns)]
        except (TypeError, ValueError) as exc:  # an unknown type, a cycle
            raise InvalidRequestError(f"a row cannot be written as CSV: {exc}") from None

    def _write(self, row: Mapping[str, Any]) -> None:
        self._writer.writerow(self._cells(row))
        self._emit(self._take())
        self.rows_written += 1

    def _write_many(self, rows: Iterable[Mapping[str, Any]]) -> None:
        count = size = 0
        parts = self._parts
        try:
            for row in rows:
                self._writer.writerow(self._cells(row))
                count += 1
                size += len(parts[-1])
                if size >= self._CHUNK:
                    self._emit(self._take())
                    self.rows_written += count
                    count = size = 0
        finally:  # the rows before one that cannot be written still go out
            if count:
                self._emit(self._take())
                self.rows_written += count

    def _scan(self) -> tuple[int, int]:
        """Row ends are newlines outside quotes (a quoted cell may hold newlines;
        an escaped quote is two quotes, which leaves the parity as it was)."""
        end = ends = 0
        quoted = False
        for pos, chunk in self._read():
            offset = pos
            for part in chunk.split(b'"'):
                if not quoted:
                    i = part.rfind(b"\n")
                    if i >= 0:
                        end = offset + i + 1
                        ends += part.count(b"\n")
                offset += len(part) + 1
                quoted = not quoted
            quoted = not quoted  # the split adds one toggle too many per chunk
        if end:
            self._check_header()
        return end, max(0, ends - 1)

    def _check_header(self) -> None:
        head = os.pread(self._fd, self._CHUNK * 16, 0)
        text = io.TextIOWrapper(io.BytesIO(head), encoding="utf-8", errors="replace", newline="")
        header = next(csv.reader(text), None)
        if header is not None and tuple(header) != self.columns:
            raise InvalidRequestError(
                f"cannot append to {self.path}: its header is {','.join(header)!r}, "
                f"the rows have {','.join(self.columns)!r}"
            )


class _Collector:
    """The csv writer's file: keeps each line it writes."""

    __slots__ = ("write",)

    def __init__(self, parts: list[str]) -> None:
        self.write = parts.append


#: Values the csv module writes as they are (exact types: bool is not among them).
_AS_IS = frozenset({str, int, float, type(None)})


def _cell(value: Any) -> Any:
    """A CSV cell: the csv module writes str, int and float (repr) itself."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float) and not isinstance(value, enum.Enum):
        return value
    if isinstance(value, dict | list | tuple):
        return _dumps(value)
    plain = _json_default(value)  # dates, enums, UUIDs, models, ...
    return plain if isinstance(plain, str | int | float) else _dumps(plain)


# ---------------------------------------------------------------------------------
# Column layout: JSON Schema -> Arrow types and value converters


def _json_text(value: Any) -> str:
    try:
        return _dumps(value)
    except (TypeError, ValueError):
        raise _Mismatch("a JSON value", value) from None


class _Mismatch(Exception):
    """A value that does not fit its column; ``where`` names the nested field."""

    def __init__(self, expected: str, value: Any) -> None:
        super().__init__(f"expected {expected}, got {value!r:.80}")
        self.where = ""


@dataclasses.dataclass(frozen=True)
class _Kind:
    """One column's (or nested field's) type. ``name``: string, integer, number,
    boolean, timestamp, date, json (any JSON, stored as its text), text (any value
    stored as text: attribute columns), list (``item``), struct (``fields``)."""

    name: str
    nullable: bool = True
    item: _Kind | None = None
    fields: tuple[tuple[str, _Kind], ...] = ()

    def with_nullable(self, nullable: bool) -> _Kind:
        return dataclasses.replace(self, nullable=nullable)


_JSON = _Kind("json")
_TEXT = _Kind("text")
_MAX_DEPTH = 32


def _resolve(node: Any, root: Any, refs: tuple[str, ...]) -> tuple[Any, tuple[str, ...]]:
    """Follow local ``$ref``s (JSON pointers into the root schema); a ref cycle or a
    ref that cannot be followed gives ``True`` (any JSON)."""
    while isinstance(node, Mapping) and isinstance(node.get("$ref"), str):
        ref = node["$ref"]
        if ref in refs or not ref.startswith("#"):
            return True, refs
        target = follow_pointer(root, ref)
        if target is MISSING:
            return True, refs
        refs = (*refs, ref)
        node = target
    return node, refs


def _scalar_kind(values: Iterable[Any]) -> _Kind:
    """The kind holding every value of an ``enum`` or ``const``."""
    kinds: set[str] = set()
    nullable = False
    for v in values:
        if v is None:
            nullable = True
        elif isinstance(v, bool):
            kinds.add("boolean")
        elif isinstance(v, int):
            kinds.add("integer")
        elif isinstance(v, float):
            kinds.add("number")
        elif isinstance(v, str):
            kinds.add("string")
        else:
            kinds.add("json")
    return _merge([_Kind(k, nullable=False) for k in kinds], nullable)


def _merge(kinds: Sequence[_Kind], nullable: bool) -> _Kind:
    """One kind for a value that may be any of ``kinds`` (anyOf, type lists)."""
    if not kinds:
        return _TEXT.with_nullable(True)  # only null
    names = {k.name for k in kinds}
    if len(kinds) == 1 or (len(names) == 1 and names <= {"string", "integer", "number", "boolean"}):
        k = kinds[0]
    elif names <= {"integer", "number"}:
        k = _Kind("number")
    elif names <= {"string", "timestamp", "date"}:
        k = _Kind("string")  # every value is a string, not all of them dates
    else:
        return _JSON
    return k.with_nullable(nullable or any(x.nullable for x in kinds))


def _kind(node: Any, root: Any, refs: tuple[str, ...], depth: int) -> _Kind:
    """The kind of values valid under the JSON Schema ``node``."""
    node, refs = _resolve(node, root, refs)
    if not isinstance(node, Mapping) or depth > _MAX_DEPTH:
        return _JSON
    if "const" in node:
        return _scalar_kind([node["const"]])
    if isinstance(node.get("enum"), list):
        return _scalar_kind(node["enum"])
    for key in ("anyOf", "oneOf"):
        branches = node.get(key)
        if isinstance(branches, list) and branches:
            nullable = False
            kinds: list[_Kind] = []
            for branch in branches:
                b, _ = _resolve(branch, root, refs)
                if isinstance(b, Mapping) and b.get("type") == "null":
                    nullable = True
                else:
                    kinds.append(_kind(branch, root, refs, depth + 1))
            return _merge(kinds, nullable)
    all_of = node.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1 and "type" not in node:
        return _kind(all_of[0], root, refs, depth + 1)
    types = node.get("type")
    if types is None:
        if isinstance(node.get("properties"), Mapping):
            types = "object"
        elif "items" in node:
            types = "array"
        else:
            return _JSON
    if isinstance(types, str):
        types = [types]
    if not isinstance(types, list):
        return _JSON
    nullable = "null" in types
    kinds = [_typed(t, node, root, refs, depth) for t in types if t != "null"]
    return _merge(kinds, nullable)


def _typed(
    name: Any, node: Mapping[str, Any], root: Any, refs: tuple[str, ...], depth: int
) -> _Kind:
    if name == "string":
        fmt = node.get("format")
        if fmt == "date-time":
            return _Kind("timestamp", nullable=False)
        if fmt == "date":
            return _Kind("date", nullable=False)
        return _Kind("string", nullable=False)
    if name in ("integer", "number", "boolean"):
        return _Kind(name, nullable=False)
    if name == "array":
        items = node.get("items")
        if not isinstance(items, Mapping | bool) or "prefixItems" in node or items is True:
            return _JSON.with_nullable(False)
        item = _kind(items, root, refs, depth + 1)
        if item.name == "json":
            return _JSON.with_nullable(False)
        return _Kind("list", nullable=False, item=item)
    if name == "object":
        props = node.get("properties")
        if not isinstance(props, Mapping) or not props:
            return _JSON.with_nullable(False)
        required = node.get("required")
        req = set(required) if isinstance(required, list) else set()
        fields = []
        for key, sub in props.items():
            kind = _kind(sub, root, refs, depth + 1)
            fields.append((str(key), kind if key in req else kind.with_nullable(True)))
        return _Kind("struct", nullable=False, fields=tuple(fields))
    return _JSON.with_nullable(False)


def _properties(schema: Mapping[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """The root object's properties and required names: its own, then through its
    ``$ref`` and ``allOf`` parts, depth first (a name's first definition wins)."""
    props: dict[str, Any] = {}
    required: set[str] = set()

    def visit(node: Any, refs: tuple[str, ...], depth: int) -> None:
        node, refs = _resolve(node, schema, refs)
        if not isinstance(node, Mapping) or depth > _MAX_DEPTH:
            return
        own = node.get("properties")
        if isinstance(own, Mapping):
            for key, sub in own.items():
                props.setdefault(str(key), sub)
        names = node.get("required")
        if isinstance(names, list):
            required.update(str(n) for n in names)
        parts = node.get("allOf")
        if isinstance(parts, list):
            for part in parts:
                visit(part, refs, depth + 1)

    visit(schema, (), 0)
    return props, required


def schema_columns(schema: Mapping[str, Any]) -> list[str]:
    """The top-level property names of a JSON Schema, in order (``$ref`` and
    ``allOf`` followed)."""
    return list(_properties(schema)[0])


def _layout(columns: Sequence[str], schema: Mapping[str, Any]) -> list[_Kind]:
    props, required = _properties(schema)
    kinds: list[_Kind] = []
    for name in columns:
        if name in props:
            kind = _kind(props[name], schema, (), 0)
            kinds.append(kind if name in required else kind.with_nullable(True))
        else:
            kinds.append(_TEXT)
    return kinds


def _infer(values: Iterable[Any]) -> _Kind:
    """A column's kind from the values it got (no schema): all nullable."""
    seen: set[str] = set()
    for v in values:
        if v is None:
            continue
        if isinstance(v, bool):
            seen.add("boolean")
        elif isinstance(v, int) and not isinstance(v, enum.Enum):
            seen.add("integer" if _INT64_MIN <= v <= _INT64_MAX else "json")
        elif isinstance(v, float):
            seen.add("number")
        elif isinstance(v, str):
            seen.add("string")
        elif isinstance(v, datetime) and v.tzinfo is not None:
            seen.add("timestamp")
        else:
            seen.add("json")
    if not seen:
        return _TEXT
    if len(seen) == 1:
        return _Kind(seen.pop())
    if seen <= {"integer", "number"}:
        return _Kind("number")
    return _JSON


def _pa() -> Any:
    """pyarrow, or a ConfigurationError saying how to get it."""
    try:
        return importlib.import_module("pyarrow")
    except ImportError:
        raise ConfigurationError(
            f"Parquet and Arrow output need pyarrow: {_INSTALL_HINT}"
        ) from None


def _arrow_type(kind: _Kind, pa: Any) -> Any:
    name = kind.name
    if name in ("string", "json", "text"):
        return pa.string()
    if name == "integer":
        return pa.int64()
    if name == "number":
        return pa.float64()
    if name == "boolean":
        return pa.bool_()
    if name == "timestamp":
        return pa.timestamp("us", tz="UTC")
    if name == "date":
        return pa.date32()
    if name == "list":
        assert kind.item is not None
        # items nullable as Arrow lists usually are; the converter enforces the schema
        return pa.list_(_arrow_field("item", kind.item.with_nullable(True), pa))
    assert name == "struct"
    return pa.struct([_arrow_field(key, k, pa) for key, k in kind.fields])


#: Field metadata naming how a string field is written (JSON text, or text), so
#: appending to the file without a schema keeps encoding its values the same way.
_KIND_KEY = b"agentic_synth.kind"


def _arrow_field(name: str, kind: _Kind, pa: Any) -> Any:
    meta = {_KIND_KEY: kind.name.encode()} if kind.name in ("json", "text") else None
    return pa.field(name, _arrow_type(kind, pa), nullable=kind.nullable, metadata=meta)


def arrow_schema(columns: Sequence[str], schema: Mapping[str, Any]) -> Any:
    """The ``pyarrow.Schema`` a Parquet sink writes for ``columns`` under a records'
    JSON Schema: string, integer (int64), number (float64), boolean; ``format:
    date-time`` is ``timestamp[us, tz=UTC]`` and ``format: date`` is ``date32``;
    arrays of one item type are lists, objects with ``properties`` are structs;
    anything else (free-form objects, mixed types, tuples) is its JSON text. A column
    is nullable unless required (and not allowing null); columns that are not
    properties (attributes) are strings. ``$ref``, ``anyOf``/``oneOf`` with null
    (pydantic's ``Optional``), ``enum`` and ``const`` are understood."""
    pa = _pa()
    cols = _check_columns(columns)
    return _to_arrow_schema(cols, _layout(cols, schema), pa)


def _to_arrow_schema(columns: Sequence[str], kinds: Sequence[_Kind], pa: Any) -> Any:
    return pa.schema(
        [_arrow_field(name, kind, pa) for name, kind in zip(columns, kinds, strict=True)]
    )


def _kind_of_arrow(field: Any, pa: Any) -> _Kind | None:
    """The kind behind an Arrow field this module writes (None for any other type):
    lets an appended Parquet file without a schema keep its own layout."""
    types = pa.types
    t, nullable = field.type, field.nullable
    if types.is_string(t) or types.is_large_string(t):
        written = (field.metadata or {}).get(_KIND_KEY, b"string").decode()
        return _Kind(written if written in ("json", "text") else "string", nullable)
    if types.is_int64(t):
        return _Kind("integer", nullable)
    if types.is_float64(t):
        return _Kind("number", nullable)
    if types.is_boolean(t):
        return _Kind("boolean", nullable)
    if types.is_timestamp(t) and t.tz is not None:
        return _Kind("timestamp", nullable)
    if types.is_date32(t):
        return _Kind("date", nullable)
    if types.is_list(t):
        item = _kind_of_arrow(t.value_field, pa)
        return None if item is None else _Kind("list", nullable, item=item)
    if types.is_struct(t):
        fields = []
        for i in range(t.num_fields):
            f = t.field(i)
            k = _kind_of_arrow(f, pa)
            if k is None:
                return None
            fields.append((f.name, k))
        return _Kind("struct", nullable, fields=tuple(fields))
    return None


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _parse_timestamp(value: Any) -> datetime:
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            try:  # RFC 3339 allows a lower-case t and z
                dt = datetime.fromisoformat(value.upper())
            except ValueError:
                raise _Mismatch("an RFC 3339 date-time", value) from None
    else:
        raise _Mismatch("an RFC 3339 date-time", value)
    # a time without an offset is taken as UTC
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _converter(kind: _Kind, path: str, dropped: set[str]) -> Callable[[Any], Any]:
    """A function that checks one value against ``kind`` and returns what Arrow takes;
    raises _Mismatch (ValueError for a missing required value)."""
    name = kind.name
    conv: Callable[[Any], Any]
    if name == "string":

        def conv(v: Any) -> Any:
            if isinstance(v, str):
                return v
            raise _Mismatch("a string", v)

    elif name == "text":

        def conv(v: Any) -> Any:
            return v if isinstance(v, str) else _json_text(v)

    elif name == "json":
        conv = _json_text
    elif name == "integer":

        def conv(v: Any) -> Any:
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            if isinstance(v, int) and not isinstance(v, bool) and _INT64_MIN <= v <= _INT64_MAX:
                return v
            raise _Mismatch("a 64-bit integer", v)

    elif name == "number":

        def conv(v: Any) -> Any:
            if isinstance(v, int | float) and not isinstance(v, bool):
                try:
                    return float(v)
                except OverflowError:
                    pass
            raise _Mismatch("a number", v)

    elif name == "boolean":

        def conv(v: Any) -> Any:
            if isinstance(v, bool):
                return v
            raise _Mismatch("a boolean", v)

    elif name == "timestamp":
        conv = _parse_timestamp
    elif name == "date":

        def conv(v: Any) -> Any:
            if isinstance(v, date) and not isinstance(v, datetime):
                return v
            if isinstance(v, str):
                try:
                    return date.fromisoformat(v)
                except ValueError:
                    pass
            raise _Mismatch("an ISO 8601 date", v)

    elif name == "list":
        assert kind.item is not None
        item = _checked(kind.item, path + "[]", dropped)

        def conv(v: Any) -> Any:
            if isinstance(v, list | tuple):
                return [item(x) for x in v]
            raise _Mismatch("an array", v)

    else:
        assert name == "struct"
        subs = [(key, _checked(k, f"{path}.{key}", dropped)) for key, k in kind.fields]
        known = frozenset(key for key, _ in kind.fields)

        def conv(v: Any) -> Any:
            if not isinstance(v, Mapping):
                raise _Mismatch("an object", v)
            if not known.issuperset(v):
                dropped.update(f"{path}.{k}" for k in v if k not in known)
            return {key: sub(v.get(key)) for key, sub in subs}

    return conv


#: Per kind, the exact value types that go to Arrow unchanged (no call needed).
_AS_ARROW_TAKES: dict[str, frozenset[type]] = {
    "string": frozenset({str}),
    "text": frozenset({str}),
    "number": frozenset({float}),  # integers are range-checked by their converter
    "boolean": frozenset({bool}),
}


def _checked(kind: _Kind, path: str, dropped: set[str]) -> Callable[[Any], Any]:
    """The converter of ``kind`` with the null check and a fast path for values Arrow
    takes as they are; a mismatch found below learns its field path."""
    conv = _converter(kind, path, dropped)
    fast = _AS_ARROW_TAKES.get(kind.name, frozenset())
    nullable = kind.nullable

    def checked(v: Any) -> Any:
        if type(v) in fast:
            return v
        if v is None:
            if nullable:
                return None
            exc = _Mismatch("a value (not nullable)", v)
            exc.where = path
            raise exc
        try:
            return conv(v)
        except _Mismatch as exc:
            exc.where = exc.where or path
            raise

    return checked


class _Columns:
    """Converts rows to lists of Arrow-ready values, and those to tables."""

    def __init__(self, columns: tuple[str, ...], kinds: Sequence[_Kind], dropped: set[str]) -> None:
        self.columns = columns
        self.kinds = list(kinds)
        self._convs = [
            (name, _checked(k, name, dropped)) for name, k in zip(columns, kinds, strict=True)
        ]

    def row(self, row: Mapping[str, Any]) -> list[Any]:
        """The row's values in column order, checked and converted (nothing is kept
        of a row that does not fit: InvalidRequestError names the field)."""
        get = row.get
        try:
            return [conv(get(name)) for name, conv in self._convs]
        except _Mismatch as exc:
            raise InvalidRequestError(f"column {exc.where!r}: {exc}") from None

    def arrow_schema(self, pa: Any) -> Any:
        return _to_arrow_schema(self.columns, self.kinds, pa)

    def table(self, rows: Sequence[Sequence[Any]], schema: Any, pa: Any) -> Any:
        arrays = [pa.array([r[i] for r in rows], type=field.type) for i, field in enumerate(schema)]
        return pa.Table.from_arrays(arrays, schema=schema)


def _layout_for(
    columns: tuple[str, ...], schema: Mapping[str, Any] | None, sample: Sequence[Mapping[str, Any]]
) -> list[_Kind]:
    if schema is not None:
        return _layout(columns, schema)
    return [_infer(r.get(name) for r in sample) for name in columns]


def rows_to_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    schema: Mapping[str, Any] | None = None,
) -> Any:
    """A ``pyarrow.Table`` of ``rows`` with the layout a Parquet sink would write."""
    pa = _pa()
    cols = _check_columns(columns)
    dropped: set[str] = set()
    layout = _Columns(cols, _layout_for(cols, schema, rows), dropped)
    arrow = layout.arrow_schema(pa)
    return layout.table([layout.row(r) for r in rows], arrow, pa)


# ---------------------------------------------------------------------------------
# Parquet


@contextmanager
def _signals_held() -> Iterator[None]:
    """Hold Ctrl-C (and a SIGTERM turned into an exception) while a row group or the
    footer is written, so it cannot land between writing a group and forgetting it
    (the group would be written twice at close) or in the middle of the footer; it
    is handled right after the block.

    The Python-level handlers are swapped rather than the signals blocked: pyarrow
    runs threads, and the kernel gives a process signal to any thread not blocking
    it, whose handler call would still interrupt this one at once."""
    if threading.current_thread() is not threading.main_thread():
        yield  # Python runs signal handlers in the main thread only
        return
    pending: list[tuple[int, Any]] = []

    def hold(signum: int, frame: Any) -> None:
        pending.append((signum, frame))

    swapped: dict[int, Callable[[int, Any], Any]] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(sig)
        if callable(handler):  # SIG_DFL and SIG_IGN stay: nothing to hold in Python
            signal.signal(sig, hold)
            swapped[sig] = handler
    try:
        yield
    finally:
        for number, handler in swapped.items():
            signal.signal(number, handler)
        for number, frame in pending:
            swapped[number](number, frame)  # Ctrl-C: raises KeyboardInterrupt here


class _ParquetSink(Sink):
    def __init__(
        self,
        path: Path,
        columns: tuple[str, ...],
        schema: Mapping[str, Any] | None,
        append: bool,
        row_group_size: int,
    ) -> None:
        super().__init__(path, columns)
        self._pa = _pa()
        self._pq = importlib.import_module("pyarrow.parquet")
        self._schema = schema
        self._group = row_group_size
        self._rows: list[Any] = []  # converted rows (or raw ones until the layout is known)
        self._known = frozenset(columns)
        self._layout: _Columns | None = None
        self._arrow: Any = None
        self._writer: Any = None
        self._existing: Any = None  # pq.ParquetFile of the file being appended to
        if schema is not None:
            self._set_layout(_layout(columns, schema))
        if append and path.exists() and path.stat().st_size > 0:
            self._open_existing()
        try:
            fd, tmp = tempfile.mkstemp(
                dir=path.absolute().parent, prefix=f".{path.name}.", suffix=".tmp"
            )
        except OSError as exc:
            if self._existing is not None:
                self._existing.close()
            raise ConfigurationError(f"cannot write {path}: {_os_reason(exc)}") from None
        os.close(fd)
        self._tmp = Path(tmp)

    def _set_layout(self, kinds: Sequence[_Kind]) -> None:
        self._layout = _Columns(self.columns, kinds, self._dropped)
        self._arrow = self._layout.arrow_schema(self._pa)

    def _open_existing(self) -> None:
        pa = self._pa
        try:
            existing = self._pq.ParquetFile(self.path)
        except (OSError, pa.ArrowException) as exc:
            raise InvalidRequestError(
                f"cannot append to {self.path}: not a Parquet file ({exc})"
            ) from None
        file_schema = existing.schema_arrow
        if tuple(file_schema.names) != self.columns:
            raise InvalidRequestError(
                f"cannot append to {self.path}: its columns are {', '.join(file_schema.names)}, "
                f"the rows have {', '.join(self.columns)}"
            )
        if self._arrow is None:
            kinds = [_kind_of_arrow(f, pa) for f in file_schema]
            if any(k is None for k in kinds):
                raise InvalidRequestError(
                    f"cannot append to {self.path}: it has column types this sink does not "
                    f"write; pass schema="
                )
            self._set_layout([k for k in kinds if k is not None])
        elif not _same_types(file_schema, self._arrow):
            raise InvalidRequestError(
                f"cannot append to {self.path}: its column types ({file_schema.types}) "
                f"differ from the schema's ({self._arrow.types})"
            )
        self._existing = existing
        self.rows_before = existing.metadata.num_rows

    def _write(self, row: Mapping[str, Any]) -> None:
        if not self._known.issuperset(row):
            self._dropped.update(k for k in row if k not in self._known)
        layout = self._layout
        # one append per row: a Ctrl-C cannot leave half a row in the buffer
        self._rows.append(dict(row) if layout is None else layout.row(row))
        self.rows_written += 1
        if len(self._rows) >= self._group:
            self._flush()

    def _flush(self) -> None:
        if self._layout is None:
            # no schema: the first row group decides the layout (it always fits)
            sample = self._rows
            self._set_layout(_layout_for(self.columns, None, sample))
            assert self._layout is not None
            self._rows = [self._layout.row(r) for r in sample]
        if self._writer is None:
            self._start()
        if not self._rows:
            return
        table = self._layout.table(self._rows, self._arrow, self._pa)
        with _signals_held():
            self._writer.write_table(table, row_group_size=len(self._rows))
            self._rows = []

    def _start(self) -> None:
        """Open the writer on the temporary file; carry an appended file's rows over,
        with Ctrl-C held until they all are (a half copy must never replace the file)."""
        with _signals_held():
            self._writer = self._pq.ParquetWriter(self._tmp, self._arrow)
            existing = self._existing
            if existing is not None:
                for i in range(existing.num_row_groups):  # one group in memory at a time
                    group = existing.read_row_group(i)
                    self._writer.write_table(
                        self._pa.Table.from_arrays(group.columns, schema=self._arrow)
                    )
                existing.close()
                self._existing = None

    def _close(self, complete: bool) -> None:
        with _signals_held():
            try:
                if self.rows_written or complete:
                    self._flush()
                    self._writer.close()
                    os.replace(self._tmp, self.path)
                    return
            except BaseException:
                if self._writer is not None:
                    try:
                        self._writer.close()
                    except Exception:
                        pass
                self._tmp.unlink(missing_ok=True)
                raise
            finally:
                if self._existing is not None:
                    self._existing.close()
            self._tmp.unlink(missing_ok=True)


def _same_types(a: Any, b: Any) -> bool:
    return len(a) == len(b) and all(x.type.equals(y.type) for x, y in zip(a, b, strict=True))
