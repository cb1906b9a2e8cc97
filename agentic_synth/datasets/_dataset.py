"""``Dataset``: what a dataset job returns, records beside the account of the job.

Records stay as produced (dicts, or instances of the pydantic model the schema
was); ``rows`` are the flat form files and data frames take: the record's fields
plus the attribute columns that produced it. Every export (``write``,
``to_arrow``, ``to_pandas``) has the same columns, so a file and a data frame of
one dataset agree.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, overload

from .._exceptions import ConfigurationError, InvalidRequestError
from ._sinks import open_sink, rows_to_table

__all__ = ["Dataset", "DatasetStats", "SlotFailure"]


@dataclasses.dataclass(frozen=True, slots=True)
class SlotFailure:
    """A slot that could not be filled: why, after how many calls, what the model
    said last (None if it never answered) and the attributes it was asked with."""

    slot: int
    reason: str
    attempts: int
    last_output: str | None
    attributes: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class DatasetStats:
    """The account of a job. Each slot ends as exactly one of valid (first answer),
    corrected (valid after corrections or restarts) or failed; ``dropped`` records
    were valid but discarded (near-duplicates replaced by new samples).
    ``near_duplicate_rate`` (Jaccard >= 0.8 on word 3-grams) and ``distinct_1`` /
    ``distinct_2`` describe the records kept."""

    requested: int = 0
    valid: int = 0
    corrected: int = 0
    dropped: int = 0
    failed: int = 0
    near_duplicates: int = 0
    retries: int = 0
    restarts: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    near_duplicate_rate: float = 0.0
    distinct_1: float = 0.0
    distinct_2: float = 0.0

    def to_dict(self) -> dict[str, int | float]:
        """The figures by name, for JSON reports and logs."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


class Dataset:
    """Records with their failures and stats; iterates, indexes and counts records.

    ``Dataset(records, columns, failures, stats, *, model=None, rows=None,
    schema=None)``: ``columns`` is the row layout (record fields, then attribute
    columns); ``rows`` the records' rows when the job built them (with attribute
    values), else derived from the records; ``schema`` the records' JSON Schema, which
    types the Arrow and Parquet columns (``model.model_json_schema()`` when only a
    pydantic ``model`` is given).
    """

    __slots__ = (
        "_all_columns",
        "_columns",
        "_rows",
        "_schema",
        "failures",
        "model",
        "records",
        "stats",
    )

    def __init__(
        self,
        records: Sequence[Any],
        columns: Sequence[str],
        failures: Sequence[SlotFailure],
        stats: DatasetStats,
        *,
        model: type[Any] | None = None,
        rows: Sequence[Mapping[str, Any]] | None = None,
        schema: Mapping[str, Any] | None = None,
    ) -> None:
        self.records: list[Any] = list(records)
        self.failures: list[SlotFailure] = list(failures)
        self.stats = stats
        self.model = model
        if isinstance(columns, str):
            raise InvalidRequestError("columns must be a sequence of names, not one string")
        self._columns = tuple(columns)
        if rows is not None and len(rows) != len(self.records):
            raise InvalidRequestError(
                f"{len(rows)} rows for {len(self.records)} records: one row per record"
            )
        self._rows: list[dict[str, Any]] | None = (
            None if rows is None else [r if isinstance(r, dict) else dict(r) for r in rows]
        )
        self._all_columns: list[str] | None = None
        if schema is None and model is not None and hasattr(model, "model_json_schema"):
            schema = model.model_json_schema()
        self._schema = schema

    @property
    def rows(self) -> list[dict[str, Any]]:
        """One dict per record: its fields (a model as ``model_dump(mode="json")``)
        plus its attribute columns when the job gave them."""
        if self._rows is None:
            self._rows = [_as_row(r) for r in self.records]
        return self._rows

    @property
    def columns(self) -> list[str]:
        """The layout of rows, files and frames: the given columns, then any other
        key found in the rows (so no export loses a field)."""
        if self._all_columns is None:
            known = set(self._columns)
            extra: dict[str, None] = {}
            for row in self.rows:
                if not known.issuperset(row):
                    extra.update((k, None) for k in row if k not in known)
            self._all_columns = [*self._columns, *extra]
        return list(self._all_columns)

    @property
    def schema(self) -> Mapping[str, Any] | None:
        """The records' JSON Schema, if known."""
        return self._schema

    def __iter__(self) -> Iterator[Any]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        return self.records[index]

    def __repr__(self) -> str:
        return (
            f"<Dataset {len(self.records)} records, {len(self.failures)} failures, "
            f"columns={self.columns}>"
        )

    def to_arrow(self) -> Any:
        """A ``pyarrow.Table`` of the rows, typed as the Parquet file would be
        (ConfigurationError if pyarrow is not installed)."""
        return rows_to_table(self.rows, self.columns, self._schema)

    def to_pandas(self) -> Any:
        """A ``pandas.DataFrame`` of the rows, one column per entry of :attr:`columns`
        (nested values stay dicts and lists; ConfigurationError without pandas)."""
        try:
            pd = importlib.import_module("pandas")
        except ImportError:
            raise ConfigurationError("to_pandas() needs pandas: pip install pandas") from None
        return pd.DataFrame.from_records(self.rows, columns=self.columns)

    def write(self, path: str | os.PathLike[str], *, append: bool = False) -> Path:
        """Write the rows to ``path`` (JSONL, CSV or Parquet, by suffix; see
        :func:`~agentic_synth.datasets.open_sink`) and return it. An existing file is
        replaced only once the first row is ready."""
        target = Path(os.fspath(path))
        with open_sink(target, self.columns, schema=self._schema, append=append) as sink:
            sink.write_many(self.rows)
        return target


def _as_row(record: Any) -> dict[str, Any]:
    dump = getattr(record, "model_dump", None)
    if callable(dump):
        return dict(dump(mode="json", by_alias=True))
    if isinstance(record, Mapping):
        return dict(record)
    raise InvalidRequestError(
        f"a record must be a mapping or a pydantic model, got {type(record).__name__}"
    )
