"""Sinks write real files that independent readers (json, csv, pandas, pyarrow) read
back as written; they never destroy a file before the first row; they append."""

from __future__ import annotations

import csv
import errno
import json
import os
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

import pandas as pd  # type: ignore[import-untyped]
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest
from pydantic import BaseModel

from agentic_synth._exceptions import ConfigurationError, InvalidRequestError
from agentic_synth.datasets._sinks import (
    SUPPORTED_SUFFIXES,
    arrow_schema,
    open_sink,
    schema_columns,
)

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": "string"},
        "score": {"type": "number"},
        "active": {"type": "boolean"},
        "joined": {"type": "string", "format": "date-time"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "address": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "zip": {"type": ["string", "null"]}},
            "required": ["city"],
        },
        "extra": {"type": "object"},
    },
    "required": ["id", "name"],
}
FORMATS = [".jsonl", ".csv", ".parquet"]
COLUMNS = ["id", "name", "score", "active", "joined", "tags", "address", "extra", "topic"]


def make_rows(n: int, start: int = 0) -> list[dict[str, Any]]:
    """Deterministic rows exercising every kind of value (nulls included)."""
    rows = []
    for i in range(start, start + n):
        rows.append(
            {
                "id": i,
                "name": f'user, "{i}"\nsecond line é',  # CSV quoting, newline, UTF-8
                "score": None if i % 5 == 0 else i / 3,
                "active": i % 2 == 0,
                "joined": f"2024-01-{1 + i % 28:02d}T{i % 24:02d}:30:00+02:00",
                "tags": [f"t{i % 3}", "x"] if i % 4 else [],
                "address": None if i % 7 == 0 else {"city": f"c{i % 4}", "zip": None},
                "extra": {"k": [i, {"deep": True}]},
                "topic": ["math", "art", None][i % 3],
            }
        )
    return rows


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def utc(s: str) -> datetime:
    return datetime.fromisoformat(s).astimezone(UTC)


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize("suffix", [".jsonl", ".ndjson", ".JSONL"])
def test_jsonl_round_trip(tmp_path: Path, suffix: str) -> None:
    rows = make_rows(50)
    path = tmp_path / f"out{suffix}"
    with open_sink(path, COLUMNS, schema=SCHEMA) as sink:
        for row in rows[:20]:
            sink.write(row)
        sink.write_many(rows[20:])
    assert sink.rows_written == 50
    assert read_jsonl(path) == rows  # each row whole, keys as given
    assert sink.dropped_keys == frozenset()


def test_csv_round_trip_with_stdlib_and_pandas(tmp_path: Path) -> None:
    rows = make_rows(50)
    path = tmp_path / "out.csv"
    with open_sink(path, COLUMNS, schema=SCHEMA) as sink:
        sink.write_many(rows[:30])
        for row in rows[30:]:
            sink.write(row)
    got = read_csv(path)
    assert list(got[0]) == COLUMNS
    for row, cells in zip(rows, got, strict=True):
        assert cells["id"] == str(row["id"])
        assert cells["name"] == row["name"]
        assert cells["score"] == ("" if row["score"] is None else repr(row["score"]))
        assert cells["active"] == ("true" if row["active"] else "false")
        assert cells["joined"] == row["joined"]
        assert json.loads(cells["tags"]) == row["tags"]
        assert (json.loads(cells["address"]) if cells["address"] else None) == row["address"]
        assert json.loads(cells["extra"]) == row["extra"]
        assert cells["topic"] == (row["topic"] or "")
    frame = pd.read_csv(path, keep_default_na=False)
    assert frame["id"].tolist() == list(range(50))
    assert frame["name"].tolist() == [r["name"] for r in rows]
    assert frame["active"].tolist() == [r["active"] for r in rows]


def test_parquet_round_trip_typed_by_schema(tmp_path: Path) -> None:
    rows = make_rows(95)
    path = tmp_path / "out.parquet"
    with open_sink(path, COLUMNS, schema=SCHEMA, row_group_size=20) as sink:
        for row in rows[:50]:
            sink.write(row)
        sink.write_many(rows[50:])
    file = pq.ParquetFile(path)
    assert file.metadata.num_rows == 95
    assert file.num_row_groups == 5  # 20, 20, 20, 20, 15: written as rows arrived
    table = pq.read_table(path)
    assert table.schema.equals(arrow_schema(COLUMNS, SCHEMA))
    fields = {f.name: f for f in table.schema}
    assert fields["id"].type == pa.int64() and not fields["id"].nullable
    assert fields["name"].type == pa.string() and not fields["name"].nullable
    assert fields["score"].type == pa.float64() and fields["score"].nullable
    assert fields["active"].type == pa.bool_()
    assert fields["joined"].type == pa.timestamp("us", tz="UTC")
    assert fields["tags"].type == pa.list_(pa.string())
    assert fields["address"].type == pa.struct(
        [pa.field("city", pa.string(), nullable=False), pa.field("zip", pa.string())]
    )
    assert fields["extra"].type == pa.string()  # free-form object: its JSON text
    assert fields["topic"].type == pa.string()  # an attribute column
    for row, got in zip(rows, table.to_pylist(), strict=True):
        assert got["id"] == row["id"] and got["name"] == row["name"]
        assert got["score"] == row["score"] and got["active"] == row["active"]
        assert got["joined"] == utc(row["joined"])
        assert got["tags"] == row["tags"]
        assert got["address"] == row["address"]
        assert json.loads(got["extra"]) == row["extra"]
        assert got["topic"] == row["topic"]
    frame = pd.read_parquet(path)
    assert frame["id"].tolist() == list(range(95))
    assert str(frame["joined"].dtype) == "datetime64[us, UTC]"


def test_parquet_without_schema_infers_from_first_group(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = [
        {"i": n, "f": n if n % 2 else n + 0.5, "s": f"s{n}", "b": n % 2 == 0, "o": {"n": n}}
        for n in range(10)
    ]
    rows[0]["none"] = None
    path = tmp_path / "inferred.parquet"
    with open_sink(path, ["i", "f", "s", "b", "o", "none"], row_group_size=4) as sink:
        sink.write_many(rows)
    table = pq.read_table(path)
    assert [f.type for f in table.schema] == [
        pa.int64(),
        pa.float64(),
        pa.string(),
        pa.bool_(),
        pa.string(),
        pa.string(),
    ]
    got = table.to_pylist()
    assert [r["i"] for r in got] == list(range(10))
    assert [json.loads(r["o"]) for r in got] == [{"n": n} for n in range(10)]
    assert all(r["none"] is None for r in got)


def test_pydantic_model_schema_maps_to_arrow() -> None:
    """pydantic's JSON Schema: $ref/$defs for nested models, anyOf-with-null for
    Optional, enum for Literal, additionalProperties maps, dates."""

    class Address(BaseModel):
        city: str
        zip: str | None = None

    class User(BaseModel):
        name: str
        age: int | None = None
        ratio: int | float
        kind: Literal["a", "b"]
        born: date
        seen: datetime | None = None
        address: Address
        previous: list[Address] = []
        counts: dict[str, int] = {}
        either: int | str = 0

    schema = User.model_json_schema()
    columns = [*User.model_fields, "topic"]
    got = {f.name: (f.type, f.nullable) for f in arrow_schema(columns, schema)}
    address = pa.struct([pa.field("city", pa.string(), False), pa.field("zip", pa.string())])
    assert got == {
        "name": (pa.string(), False),
        "age": (pa.int64(), True),
        "ratio": (pa.float64(), False),
        "kind": (pa.string(), False),
        "born": (pa.date32(), False),
        "seen": (pa.timestamp("us", tz="UTC"), True),
        "address": (address, False),
        "previous": (pa.list_(address), True),
        "counts": (pa.string(), True),  # a map: JSON text
        "either": (pa.string(), True),  # int or str: JSON text
        "topic": (pa.string(), True),
    }


def test_schema_edge_cases_fall_back_to_json_text() -> None:
    schema = {
        "$defs": {"node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}}}},
        "type": "object",
        "properties": {
            "tree": {"$ref": "#/$defs/node"},  # recursive: the cycle becomes JSON text
            "tuple": {"type": "array", "prefixItems": [{"type": "integer"}]},
            "anything": {},
            "nums": {"type": ["integer", "number"]},
            "const": {"const": 3},
            "mixed_enum": {"enum": [1, "a"]},
            "nullable_enum": {"enum": ["x", None]},
            "remote": {"$ref": "https://example.com/schema"},
            "only_null": {"type": "null"},
        },
        "required": ["tree", "tuple", "anything", "nums", "const", "nullable_enum"],
    }
    cols = list(schema["properties"])
    got = {f.name: (f.type, f.nullable) for f in arrow_schema(cols, schema)}
    assert got == {
        "tree": (pa.struct([pa.field("next", pa.string())]), False),
        "tuple": (pa.string(), False),
        "anything": (pa.string(), True),
        "nums": (pa.float64(), False),
        "const": (pa.int64(), False),
        "mixed_enum": (pa.string(), True),
        "nullable_enum": (pa.string(), True),
        "remote": (pa.string(), True),
        "only_null": (pa.string(), True),
    }


def test_root_ref_and_allof_properties_are_columns() -> None:
    schema = {
        "$defs": {
            "Base": {
                "type": "object",
                "properties": {"id": {"type": "integer"}},
                "required": ["id"],
            }
        },
        "allOf": [{"$ref": "#/$defs/Base"}, {"properties": {"name": {"type": "string"}}}],
    }
    assert schema_columns(schema) == ["id", "name"]
    assert schema_columns({"$ref": "#/$defs/Base", "$defs": schema["$defs"]}) == ["id"]
    got = [(f.name, f.type, f.nullable) for f in arrow_schema(["id", "name"], schema)]
    assert got == [("id", pa.int64(), False), ("name", pa.string(), True)]


def test_json_text_columns_hold_valid_json(tmp_path: Path) -> None:
    schema = {"type": "object", "properties": {"v": {"type": ["integer", "string"]}}}
    path = tmp_path / "j.parquet"
    with open_sink(path, ["v"], schema=schema) as sink:
        sink.write_many([{"v": 1}, {"v": "a"}, {"v": None}])
    cells = pq.read_table(path).column("v").to_pylist()
    assert cells == ["1", '"a"', None]


def test_timestamps_are_utc_and_dates_parse(tmp_path: Path) -> None:
    schema = {
        "type": "object",
        "properties": {
            "t": {"type": "string", "format": "date-time"},
            "d": {"type": "string", "format": "date"},
        },
    }
    values = ["2024-05-01T12:00:00+02:00", "2024-05-01t10:00:00.123456z", "2024-05-01T10:00:00"]
    path = tmp_path / "t.parquet"
    with open_sink(path, ["t", "d"], schema=schema) as sink:
        for v in values:
            sink.write({"t": v, "d": "2024-02-29"})
        sink.write({"t": datetime(2024, 5, 1, 10, tzinfo=UTC), "d": date(2024, 3, 1)})
    table = pq.read_table(path).to_pylist()
    assert [r["t"] for r in table] == [
        datetime(2024, 5, 1, 10, tzinfo=UTC),
        datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC),
        datetime(2024, 5, 1, 10, tzinfo=UTC),  # no offset: taken as UTC
        datetime(2024, 5, 1, 10, tzinfo=UTC),
    ]
    assert [r["d"] for r in table] == [date(2024, 2, 29)] * 3 + [date(2024, 3, 1)]


# --------------------------------------------------------------------------- errors


def test_unknown_suffix_names_the_supported_ones(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError) as info:
        open_sink(tmp_path / "out.xlsx", ["a"])
    for suffix in SUPPORTED_SUFFIXES:
        assert suffix in str(info.value)
    assert not (tmp_path / "out.xlsx").exists()


@pytest.mark.parametrize("suffix", SUPPORTED_SUFFIXES)
def test_unwritable_targets_fail_at_open(tmp_path: Path, suffix: str) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        open_sink(tmp_path / "missing" / f"out{suffix}", ["a"])
    (tmp_path / f"dir{suffix}").mkdir()
    with pytest.raises(ConfigurationError, match="directory"):
        open_sink(tmp_path / f"dir{suffix}", ["a"])


def test_bad_columns_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="duplicate"):
        open_sink(tmp_path / "a.csv", ["x", "y", "x"])
    with pytest.raises(InvalidRequestError, match="not one string"):
        open_sink(tmp_path / "a.csv", "xy")
    with pytest.raises(InvalidRequestError, match="non-empty"):
        open_sink(tmp_path / "a.csv", ["x", ""])
    assert not (tmp_path / "a.csv").exists()


def test_parquet_without_pyarrow_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow -> ImportError
    with pytest.raises(ConfigurationError, match=r"pip install 'agentic-synth\[parquet\]'"):
        open_sink(tmp_path / "out.parquet", ["a"])
    with open_sink(tmp_path / "out.jsonl", ["a"]) as sink:  # the others need nothing
        sink.write({"a": 1})


def test_a_row_that_does_not_fit_is_refused_whole(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    with open_sink(path, COLUMNS, schema=SCHEMA) as sink:
        sink.write(make_rows(1)[0])
        bad = make_rows(1, start=1)[0]
        bad["address"] = {"city": 5}
        with pytest.raises(InvalidRequestError, match=r"column 'address\.city': expected a string"):
            sink.write(bad)
        with pytest.raises(InvalidRequestError, match=r"column 'id'.*not nullable"):
            sink.write({"name": "no id"})
        with pytest.raises(InvalidRequestError, match=r"column 'tags\[\]'"):
            sink.write({**bad, "address": None, "tags": ["ok", 3]})
        with pytest.raises(InvalidRequestError, match="64-bit integer"):
            sink.write({"id": 2**70, "name": "big"})
        sink.write(make_rows(1, start=2)[0])
    assert sink.rows_written == 2
    assert pq.read_table(path).column("id").to_pylist() == [0, 2]


def test_integral_floats_fit_integer_columns(tmp_path: Path) -> None:
    """JSON Schema counts 2.0 as an integer, so a validator lets it through."""
    path = tmp_path / "i.parquet"
    with open_sink(path, ["id", "name"], schema=SCHEMA) as sink:
        sink.write({"id": 2.0, "name": "x"})
        with pytest.raises(InvalidRequestError):
            sink.write({"id": 2.5, "name": "x"})
    assert pq.read_table(path).column("id").to_pylist() == [2]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_keys_outside_the_layout_are_reported(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"d{suffix}"
    with open_sink(path, ["id", "name", "address"], schema=SCHEMA) as sink:
        sink.write({"id": 1, "name": "a", "address": {"city": "x", "street": "s"}, "attr_x": 1})
    expected = {"attr_x", "address.street"} if suffix == ".parquet" else {"attr_x"}
    assert sink.dropped_keys == expected


@pytest.mark.parametrize("suffix", FORMATS)
def test_a_value_with_no_json_form_is_refused_after_the_rows_before_it(
    tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"o{suffix}"
    with open_sink(path, ["id", "extra"], schema=SCHEMA) as sink:
        with pytest.raises(InvalidRequestError, match=r"JSON|CSV"):
            sink.write_many([{"id": 0}, {"id": 1, "extra": {"x": object()}}, {"id": 2}])
        sink.write({"id": 3})
    assert sink.rows_written == 2
    if suffix == ".jsonl":
        assert read_jsonl(path) == [{"id": 0}, {"id": 3}]
    elif suffix == ".csv":
        assert [r["id"] for r in read_csv(path)] == ["0", "3"]
    else:
        assert pq.read_table(path).column("id").to_pylist() == [0, 3]


def test_write_after_close_fails_and_close_twice_is_harmless(tmp_path: Path) -> None:
    sink = open_sink(tmp_path / "a.jsonl", ["a"])
    sink.write({"a": 1})
    sink.close()
    sink.close()
    assert sink.closed
    with pytest.raises(InvalidRequestError, match="closed"):
        sink.write({"a": 2})
    with pytest.raises(InvalidRequestError, match="closed"):
        sink.write_many([{"a": 2}])


def test_failed_write_is_cut_back_to_the_last_whole_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Disk full in the middle of a write: the file keeps whole rows only."""
    path = tmp_path / "full.jsonl"
    sink = open_sink(path, ["a"])
    sink.write({"a": 1})
    real_write = os.write

    def half_then_full(fd: int, data: Any) -> int:
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(ConfigurationError, match="No space left"):
        sink.write({"a": "x" * 100})
    monkeypatch.setattr(os, "write", real_write)
    sink.write({"a": 3})
    sink.close()
    assert read_jsonl(path) == [{"a": 1}, {"a": 3}]
    assert sink.rows_written == 2


def test_values_beyond_json(tmp_path: Path) -> None:
    """Dates, UUIDs, decimals, enums and models a caller may hand in are written as
    their JSON forms, not refused."""
    import decimal
    import enum
    import uuid

    class Color(enum.Enum):
        RED = "red"

    class Point(BaseModel):
        x: int

    row = {
        "when": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        "id": uuid.UUID(int=1),
        "price": decimal.Decimal("1.10"),
        "color": Color.RED,
        "point": Point(x=1),
        "raw": b"\x00\x01",
    }
    cols = list(row)
    with open_sink(tmp_path / "v.jsonl", cols) as sink:
        sink.write(row)
    with open_sink(tmp_path / "v.csv", cols) as sink:
        sink.write(row)
    line = read_jsonl(tmp_path / "v.jsonl")[0]
    cells = read_csv(tmp_path / "v.csv")[0]
    expected = {
        "when": "2024-01-02T03:04:05+00:00",
        "id": "00000000-0000-0000-0000-000000000001",
        "price": "1.10",
        "color": "red",
        "point": {"x": 1},
        "raw": "AAE=",
    }
    assert line == expected
    assert {**cells, "point": json.loads(cells["point"])} == expected


# --------------------------------------------------------------------------- atomicity

OLD = {".jsonl": b'{"old": 1}\n', ".csv": b"old\n1\n"}


def _old_parquet(path: Path) -> bytes:
    pq.write_table(pa.table({"old": [1, 2]}), path)
    return path.read_bytes()


def _existing(path: Path) -> bytes:
    if path.suffix == ".parquet":
        return _old_parquet(path)
    path.write_bytes(OLD[path.suffix])
    return OLD[path.suffix]


@pytest.mark.parametrize("suffix", FORMATS)
def test_existing_file_untouched_until_the_first_row(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"keep{suffix}"
    before = _existing(path)
    sink = open_sink(path, ["id"])
    assert path.read_bytes() == before  # opening changed nothing
    with pytest.raises(RuntimeError):
        with sink:
            raise RuntimeError("the job failed before its first row")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary left


@pytest.mark.parametrize("suffix", FORMATS)
def test_close_in_a_finally_during_an_error_counts_as_stopped(tmp_path: Path, suffix: str) -> None:
    """``close()`` without arguments in a ``finally`` (how a job closes its sink)
    while an exception propagates leaves an old file as it was."""
    path = tmp_path / f"keep{suffix}"
    before = _existing(path)
    sink = open_sink(path, ["id"])
    with pytest.raises(KeyError):
        try:
            raise KeyError("boom")
        finally:
            sink.close()
    assert path.read_bytes() == before


@pytest.mark.parametrize("suffix", FORMATS)
def test_new_file_is_not_created_by_a_run_that_wrote_nothing(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"new{suffix}"
    sink = open_sink(path, ["id"])
    sink.close(complete=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", FORMATS)
def test_completed_run_with_no_rows_leaves_an_empty_valid_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"empty{suffix}"
    _existing(path)
    with open_sink(path, ["id", "name"], schema=SCHEMA):
        pass
    if suffix == ".jsonl":
        assert path.read_bytes() == b""
    elif suffix == ".csv":
        assert path.read_bytes() == b"id,name\n"
        assert pd.read_csv(path).columns.tolist() == ["id", "name"]
    else:
        table = pq.read_table(path)
        assert table.num_rows == 0
        assert table.schema.equals(arrow_schema(["id", "name"], SCHEMA))


def test_line_files_show_each_row_as_soon_as_it_is_written(tmp_path: Path) -> None:
    rows = make_rows(5)
    jsonl, csv_path = tmp_path / "live.jsonl", tmp_path / "live.csv"
    with open_sink(jsonl, COLUMNS) as a, open_sink(csv_path, COLUMNS) as b:
        for n, row in enumerate(rows, 1):
            a.write(row)
            b.write(row)
            assert read_jsonl(jsonl) == rows[:n]  # another reader sees it at once
            assert len(read_csv(csv_path)) == n


def test_parquet_replaces_the_old_file_only_when_closed(tmp_path: Path) -> None:
    """Row groups go to a temporary file beside the target as they fill; the old file
    stays readable until the new one is complete."""
    path = tmp_path / "swap.parquet"
    before = _old_parquet(path)
    sink = open_sink(path, ["id", "name"], schema=SCHEMA, row_group_size=10)
    (tmp,) = [p for p in tmp_path.iterdir() if p != path]
    assert tmp.name.startswith(".swap.parquet.")
    sizes = []
    for row in make_rows(30):
        sink.write(row)
        sizes.append(tmp.stat().st_size)
    assert sizes[8] < sizes[9] < sizes[19] < sizes[29]  # a group per 10 rows, as they came
    assert path.read_bytes() == before
    sink.close()
    assert pq.read_table(path).column("id").to_pylist() == list(range(30))
    assert list(tmp_path.iterdir()) == [path]


# --------------------------------------------------------------------------- append


def test_jsonl_append_keeps_rows_and_cuts_a_partial_line(tmp_path: Path) -> None:
    path = tmp_path / "resume.jsonl"
    path.write_bytes(b'{"id": 0}\n{"id": 1}\n{"id": 2, "na')  # a killed writer's tail
    sink = open_sink(path, ["id"], append=True)
    assert sink.rows_before == 2
    assert path.read_bytes().endswith(b'"na')  # nothing changes before the first row
    with sink:
        sink.write_many([{"id": 2}, {"id": 3}])
    assert read_jsonl(path) == [{"id": i} for i in range(4)]


def test_jsonl_append_keeps_a_complete_last_row_without_its_newline(tmp_path: Path) -> None:
    path = tmp_path / "no_newline.jsonl"
    path.write_bytes(b'{"id": 0}\n{"id": 1}')
    with open_sink(path, ["id"], append=True) as sink:
        assert sink.rows_before == 2
        sink.write({"id": 2})
    assert read_jsonl(path) == [{"id": 0}, {"id": 1}, {"id": 2}]


def test_csv_append_counts_rows_with_quoted_newlines_and_keeps_one_header(tmp_path: Path) -> None:
    path = tmp_path / "resume.csv"
    with open_sink(path, ["id", "name"]) as sink:
        sink.write_many(make_rows(3))
    tail = b'3,"half a cell\nwith a ""quoted"" newline'  # a row cut inside quotes
    path.write_bytes(path.read_bytes() + tail)
    sink = open_sink(path, ["id", "name"], append=True)
    assert sink.rows_before == 3
    with sink:
        sink.write_many(make_rows(2, start=3))
    got = read_csv(path)
    assert [r["id"] for r in got] == ["0", "1", "2", "3", "4"]
    assert [r["name"] for r in got] == [r["name"] for r in make_rows(5)]


def test_csv_append_to_a_missing_or_empty_file_writes_the_header(tmp_path: Path) -> None:
    for path in (tmp_path / "new.csv", tmp_path / "empty.csv"):
        if path.name == "empty.csv":
            path.write_bytes(b"")
        with open_sink(path, ["id"], append=True) as sink:
            assert sink.rows_before == 0
            sink.write({"id": 1})
        assert path.read_bytes() == b"id\n1\n"


def test_csv_append_refuses_another_header(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_bytes(b"a,b\n1,2\n")
    with pytest.raises(InvalidRequestError, match="header"):
        open_sink(path, ["a", "c"], append=True)
    assert path.read_bytes() == b"a,b\n1,2\n"


@pytest.mark.parametrize("with_schema", [True, False])
def test_parquet_append_rewrites_with_the_old_rows_first(tmp_path: Path, with_schema: bool) -> None:
    path = tmp_path / "resume.parquet"
    schema = SCHEMA if with_schema else None
    rows = make_rows(25)
    cols = ["id", "name", "score", "tags", "address"]
    with open_sink(path, cols, schema=schema, row_group_size=10) as sink:
        sink.write_many(rows[:12])
    before = path.read_bytes()
    sink = open_sink(path, cols, schema=schema, append=True, row_group_size=10)
    assert sink.rows_before == 12
    sink.write_many(rows[12:])
    assert path.read_bytes() == before  # replaced only once complete
    sink.close()
    table = pq.read_table(path)
    assert table.column("id").to_pylist() == list(range(25))
    addresses = table.column("address").to_pylist()
    if not with_schema:  # inferred from the first rows: an object is its JSON text
        addresses = [None if a is None else json.loads(a) for a in addresses]
    assert addresses == [r["address"] for r in rows]
    assert pd.read_parquet(path)["name"].tolist() == [r["name"] for r in rows]


def test_parquet_append_refuses_another_layout(tmp_path: Path) -> None:
    path = tmp_path / "other.parquet"
    _old_parquet(path)
    with pytest.raises(InvalidRequestError, match="columns"):
        open_sink(path, ["id"], append=True)
    with pytest.raises(InvalidRequestError, match="types"):
        open_sink(path, ["old"], schema={"properties": {"old": {"type": "string"}}}, append=True)
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(InvalidRequestError, match="not a Parquet file"):
        open_sink(tmp_path / "junk.parquet", ["old"], append=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.parquet", "other.parquet"]


@pytest.mark.parametrize("suffix", FORMATS)
def test_append_stopped_before_a_row_changes_nothing(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"keep{suffix}"
    before = _existing(path)
    with pytest.raises(RuntimeError), open_sink(path, ["old"], append=True):
        raise RuntimeError("stopped")
    assert path.read_bytes() == before


def test_sink_repr_and_columns(tmp_path: Path) -> None:
    sink = open_sink(tmp_path / "r.csv", ("a", "b"))
    assert sink.columns == ("a", "b")
    assert "r.csv" in repr(sink) and "open" in repr(sink)
    sink.close()
    assert "closed" in repr(sink)
