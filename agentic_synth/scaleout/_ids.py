"""Input rows as requests, and their stable ids.

A row's id is the response cache's key of its request and sample (hex), so one
value is three things at once: the cache key (a row replayed after a resume is
served from a shared cache instead of paid again), the dedup key (rows with one
id are one call) and Ray's checkpoint id (a resumed job skips the rows already
written). It is computed with the cache's own functions
(:func:`~agentic_synth.caching._key.request_digest` and
:func:`~agentic_synth.caching._key.sample_key`), never a second encoding.

The sample identity must not depend on which worker sees a row first, so it is
never counted: it is the row's ``sample_column`` value if the job names one,
else 0. Identical requests without a sample column are therefore one row
sharing one id and one answer; to ask for N different answers to one prompt,
give the N rows a sample column numbering them 0..N-1.

Nothing here imports Ray: the same code runs in the driver (to check the
settings before a job starts) and in every worker.
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._core import fingerprint
from .._exceptions import ConfigurationError, InvalidRequestError
from .._request import GenerationParams, Prompt, build_request
from .._types import Request
from ..caching._key import key_prefix, request_digest, sample_key

if TYPE_CHECKING:
    from .._synth import Synth

__all__ = ["BuiltRow", "JobSpec", "RowRequests"]


@dataclass(frozen=True, slots=True)
class JobSpec:
    """Everything a worker needs to rebuild the job: picklable, and no key in its
    repr (``make_synth`` may hold ModelSpecs with keys; it is left out)."""

    make_synth: Callable[[], Synth] = field(repr=False)
    prompt: str
    system: str | None
    id_column: str
    sample_column: str | None
    params: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class BuiltRow:
    """One row as the engine sees it: its id, and its request and sample, or why
    it cannot be sent (that row's error record)."""

    row_id: str
    request: Request | None
    sample: int
    error: InvalidRequestError | None


class _Text:
    """A ``{column}`` template; without fields, a column's name (``column=True``)
    or a literal."""

    __slots__ = ("_column", "_fields", "_text")

    def __init__(self, text: str, what: str, *, column: bool) -> None:
        if not isinstance(text, str) or not text:
            raise ConfigurationError(f"{what} must be a non-empty string")
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise ConfigurationError(f"{what} is not a valid template ({exc}): {text!r}") from None
        fields = []
        for _, name, spec, conversion in parsed:
            if name is None:
                continue
            if not name or name.isdigit() or "." in name or "[" in name or spec or conversion:
                shown = (
                    name + ("!" + conversion if conversion else "") + (":" + spec if spec else "")
                )
                raise ConfigurationError(
                    f"{what} fields must be plain column names such as {{topic}}, got "
                    f"{{{shown}}} (write {{{{ and }}}} for literal braces)"
                )
            fields.append(name)
        self._text = text
        self._fields = tuple(dict.fromkeys(fields))
        # the prompt without fields names a column; the system prompt is then a literal
        self._column = column and not fields

    @property
    def columns(self) -> tuple[str, ...]:
        return (self._text,) if self._column else self._fields

    def fill(self, row: Mapping[str, Any]) -> Any:
        if self._column:
            return row[self._text]
        if not self._fields:
            return self._text
        values = {}
        for name in self._fields:
            value = row[name]
            if value is None:
                raise InvalidRequestError(f"column {name!r} is null in this row")
            values[name] = value
        return self._text.format_map(values)


class RowRequests:
    """How one job turns input rows into requests and ids (the Synth's models,
    default parameters and cache namespace, plus the job's parameters)."""

    def __init__(self, synth: Synth, spec: JobSpec) -> None:
        self._prompt = _Text(spec.prompt, "prompt", column=True)
        self._system = None if spec.system is None else _Text(spec.system, "system", column=False)
        self._sample_column = spec.sample_column
        # the cache's own view of the job: models in preference order, and its namespace
        self._models: Sequence[str] = tuple(synth.models)
        settings = synth._cache_settings
        self._prefix = key_prefix("" if settings is None else settings.namespace)
        try:
            self._params: GenerationParams = synth._params_for(dict(spec.params))
        except InvalidRequestError as exc:
            raise ConfigurationError(str(exc)) from None

    @property
    def columns(self) -> tuple[str, ...]:
        """The input columns the job reads."""
        used = list(self._prompt.columns)
        if self._system is not None:
            used += self._system.columns
        if self._sample_column is not None:
            used.append(self._sample_column)
        return tuple(dict.fromkeys(used))

    def check_columns(self, names: Sequence[str]) -> None:
        """Stop the job at its first batch when a column it reads does not exist
        (every row would fail the same way)."""
        missing = [c for c in self.columns if c not in names]
        if missing:
            raise ConfigurationError(
                f"the input has no column {', '.join(map(repr, missing))} (prompt, system or "
                f"sample_column names it); its columns: {', '.join(names) or 'none'}"
            )

    def build(self, row: Mapping[str, Any]) -> BuiltRow:
        """The row's request and id; a row that cannot be sent gets an id of its
        content and its error, so it still ends as exactly one record."""
        try:
            sample = self._sample(row)
            request = self._request(row)
        except InvalidRequestError as exc:
            return BuiltRow(self._invalid_id(row), None, 0, exc)
        digest = request_digest(request, self._models)
        return BuiltRow(sample_key(self._prefix, digest, sample).hex(), request, sample, None)

    def _request(self, row: Mapping[str, Any]) -> Request:
        prompt = self._prompt.fill(row)
        if prompt is None:
            raise InvalidRequestError(f"column {self._prompt.columns[0]!r} is null in this row")
        item: Prompt = prompt
        if self._system is not None:
            item = {"messages": _messages(prompt), "system": self._system.fill(row)}
        try:
            return build_request(item, self._params)
        except InvalidRequestError:
            raise
        except Exception as exc:  # a value of a type no request takes
            raise InvalidRequestError(
                f"this row cannot be sent: {type(exc).__name__}: {exc}"
            ) from None

    def _sample(self, row: Mapping[str, Any]) -> int:
        if self._sample_column is None:
            return 0
        value = row[self._sample_column]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidRequestError(
                f"sample column {self._sample_column!r} must hold integers >= 0, got {value!r}"
            )
        return value

    def _invalid_id(self, row: Mapping[str, Any]) -> str:
        """A stable id for a row that has no request: a digest of its values."""
        content = json.dumps(row, sort_keys=True, default=repr, ensure_ascii=False)
        return fingerprint(
            self._prefix + b"invalid-row\x1f" + content.encode("utf-8", "surrogatepass")
        ).hex()


def _messages(prompt: Any) -> Any:
    """The prompt as messages (a text prompt is one user message), so a system
    prompt can be set next to it in a dict input."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return prompt
