"""Dataset: records, rows with attribute columns, failures, stats, and exports that
independent readers agree on."""

from __future__ import annotations

import csv
import dataclasses
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd  # type: ignore[import-untyped]
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest
from pydantic import BaseModel, Field

from agentic_synth._exceptions import ConfigurationError, InvalidRequestError
from agentic_synth.datasets._dataset import Dataset, DatasetStats, SlotFailure


class Address(BaseModel):
    city: str
    zip: str | None = None


class User(BaseModel):
    name: str
    age: int
    joined: datetime
    address: Address
    tags: list[str] = []


def users(n: int) -> list[User]:
    return [
        User(
            name=f"user {i}",
            age=20 + i,
            joined=datetime(2024, 1, 1 + i, tzinfo=UTC),
            address=Address(city=f"c{i}"),
            tags=["a"] * (i % 3),
        )
        for i in range(n)
    ]


def user_dataset(n: int = 4) -> Dataset:
    """As the structured job builds it: model records, rows with attribute values."""
    records = users(n)
    topics = ["math", "art"]
    rows = [{**r.model_dump(mode="json"), "topic": topics[i % 2]} for i, r in enumerate(records)]
    failures = [SlotFailure(n, "schema never satisfied", 3, "{not json", {"topic": "art"})]
    stats = DatasetStats(requested=n + 1, valid=n - 1, corrected=1, failed=1, cost_usd=0.25)
    columns = [*User.model_fields, "topic"]
    return Dataset(records, columns, failures, stats, model=User, rows=rows)


def test_records_rows_failures_and_stats() -> None:
    ds = user_dataset()
    assert len(ds) == 4
    assert list(ds) == ds.records == users(4)
    assert ds[1] == users(4)[1] and ds[1:3] == users(4)[1:3]
    assert ds.rows[0] == {
        "name": "user 0",
        "age": 20,
        "joined": "2024-01-01T00:00:00Z",
        "address": {"city": "c0", "zip": None},
        "tags": [],
        "topic": "math",
    }
    assert ds.columns == ["name", "age", "joined", "address", "tags", "topic"]
    assert ds.failures[0].slot == 4 and ds.failures[0].attributes == {"topic": "art"}
    assert ds.stats.failed == 1 and ds.model is User
    assert ds.schema == User.model_json_schema()
    assert "4 records, 1 failures" in repr(ds)


def test_stats_to_dict_names_every_figure() -> None:
    stats = DatasetStats(requested=10, valid=8, near_duplicate_rate=0.1, distinct_2=0.9)
    figures = stats.to_dict()
    assert list(figures) == [f.name for f in dataclasses.fields(DatasetStats)]
    assert figures["requested"] == 10 and figures["near_duplicate_rate"] == 0.1
    assert set(figures) >= {
        "valid",
        "corrected",
        "dropped",
        "failed",
        "near_duplicates",
        "retries",
        "restarts",
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "distinct_1",
    }
    json.dumps(figures)  # plain numbers
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.valid = 9  # type: ignore[misc]


def test_rows_are_derived_from_records_when_not_given() -> None:
    class Aliased(BaseModel):
        user_name: str = Field(alias="userName")

    ds = Dataset([Aliased(userName="x")], ["userName"], [], DatasetStats(), model=Aliased)
    assert ds.rows == [{"userName": "x"}]  # the schema's (alias) names
    plain = Dataset([{"a": 1}, {"a": 2, "b": 3}], ["a"], [], DatasetStats())
    assert plain.rows == [{"a": 1}, {"a": 2, "b": 3}]
    assert plain.columns == ["a", "b"]  # a key outside the columns is kept, not lost
    with pytest.raises(InvalidRequestError, match="mapping or a pydantic model"):
        _ = Dataset([[1, 2]], ["a"], [], DatasetStats()).rows


def test_rows_must_match_records() -> None:
    with pytest.raises(InvalidRequestError, match="one row per record"):
        Dataset([{"a": 1}], ["a"], [], DatasetStats(), rows=[])
    with pytest.raises(InvalidRequestError, match="not one string"):
        Dataset([], "ab", [], DatasetStats())


def test_to_pandas_has_one_column_per_field_and_attribute() -> None:
    frame = user_dataset().to_pandas()
    assert frame.columns.tolist() == ["name", "age", "joined", "address", "tags", "topic"]
    assert frame["age"].tolist() == [20, 21, 22, 23]
    assert frame["topic"].tolist() == ["math", "art", "math", "art"]
    assert frame["address"][0] == {"city": "c0", "zip": None}


def test_to_arrow_is_typed_by_the_model() -> None:
    table = user_dataset().to_arrow()
    types = {f.name: f.type for f in table.schema}
    assert types["age"] == pa.int64()
    assert types["joined"] == pa.timestamp("us", tz="UTC")
    assert types["address"] == pa.struct(
        [pa.field("city", pa.string(), False), pa.field("zip", pa.string())]
    )
    assert types["topic"] == pa.string()
    assert table.column("joined").to_pylist()[2] == datetime(2024, 1, 3, tzinfo=UTC)


def test_exports_say_which_library_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    ds = user_dataset()
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ConfigurationError, match="pandas"):
        ds.to_pandas()
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(ConfigurationError, match=r"pip install 'agentic-synth\[parquet\]'"):
        ds.to_arrow()


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_write_chooses_the_format_from_the_suffix(tmp_path: Path, suffix: str) -> None:
    ds = user_dataset()
    path = ds.write(tmp_path / f"users{suffix}")
    assert path == tmp_path / f"users{suffix}"
    got: list[dict[str, Any]]
    if suffix == ".jsonl":
        got = [json.loads(line) for line in path.read_text().splitlines()]
    elif suffix == ".csv":
        with path.open(newline="") as f:
            got = [
                {
                    **r,
                    "age": int(r["age"]),
                    "address": json.loads(r["address"]),
                    "tags": json.loads(r["tags"]),
                }
                for r in csv.DictReader(f)
            ]
        assert pd.read_csv(path)["age"].tolist() == [20, 21, 22, 23]
    else:
        got = pq.read_table(path).to_pylist()
        for row in got:
            row["joined"] = row["joined"].isoformat().replace("+00:00", "Z")
        assert pd.read_parquet(path)["topic"].tolist() == ["math", "art", "math", "art"]
    assert got == ds.rows


def test_write_append_continues_a_file(tmp_path: Path) -> None:
    ds = user_dataset(2)
    path = tmp_path / "users.parquet"
    ds.write(path)
    ds.write(path, append=True)
    assert pq.read_table(path).column("name").to_pylist() == ["user 0", "user 1"] * 2


def test_dict_records_with_a_schema_write_typed_parquet(tmp_path: Path) -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer"}, "when": {"type": "string", "format": "date"}},
        "required": ["n"],
    }
    records = [{"n": 1, "when": "2024-02-29"}, {"n": 2, "when": None}]
    ds = Dataset(records, ["n", "when"], [], DatasetStats(), schema=schema)
    table = pq.read_table(ds.write(tmp_path / "d.parquet"))
    assert [f.type for f in table.schema] == [pa.int64(), pa.date32()]
    assert not table.schema.field("n").nullable


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_an_empty_dataset_writes_an_empty_valid_file(tmp_path: Path, suffix: str) -> None:
    ds = Dataset([], ["name", "age"], [], DatasetStats(requested=3, failed=3), model=User)
    path = ds.write(tmp_path / f"none{suffix}")
    if suffix == ".jsonl":
        assert path.read_bytes() == b""
    elif suffix == ".csv":
        assert pd.read_csv(path).columns.tolist() == ["name", "age"]
    else:
        assert pq.read_table(path).num_rows == 0
