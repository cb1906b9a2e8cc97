"""``Deduplicator``: the Python face of the compiled similarity index.

The index does the work (normalisation, shingling, sketches, tables, verification)
in Rust; this wrapper names the settings, turns the duplicate log into clusters
and adds file save/load. Every text passed to :meth:`Deduplicator.add` or
:meth:`Deduplicator.add_batch` takes the next *position* (0, 1, 2, ...), kept or
not, so results can always be mapped back to the caller's stream of texts.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal, NamedTuple

import anyio.to_thread

from .._core import DEFAULT_SEED, SimilarityIndex
from .._core import jaccard as _jaccard

Method = Literal["minhash", "simhash", "exact"]
Shingle = Literal["word", "char"]
Verify = Literal["exact", "signature", "none"]

__all__ = ["Deduplicator", "Match", "Method", "Shingle", "Verify"]


class Match(NamedTuple):
    """A stored near-duplicate: its position and similarity (Jaccard for MinHash,
    ``1 - hamming/64`` for SimHash, 1.0 for exact)."""

    position: int
    similarity: float


class Deduplicator:
    """Streaming near-duplicate filter over raw strings.

    ``method="minhash"`` (default) finds texts whose shingle sets have Jaccard
    similarity >= ``threshold`` (word ``ngram``-grams, or character n-grams with
    ``shingle="char"``), via MinHash LSH with ``bands`` x ``rows`` chosen for the
    threshold unless given; ``verify`` decides how LSH candidates are confirmed
    (``"exact"``: exact Jaccard of stored shingle fingerprints, the default;
    ``"signature"``: 8-bit-per-permutation estimate; ``"none"``: unconfirmed).
    ``method="simhash"`` is cheaper and matches within ``max_distance`` (<= 3)
    bits of a 64-bit SimHash; ``method="exact"`` matches equal normalised text.
    """

    __slots__ = ("_index",)

    def __init__(
        self,
        threshold: float = 0.8,
        method: Method = "minhash",
        *,
        ngram: int = 3,
        shingle: Shingle = "word",
        num_perm: int = 128,
        bands: int | None = None,
        rows: int | None = None,
        verify: Verify = "exact",
        max_distance: int = 3,
        seed: int = DEFAULT_SEED,
    ) -> None:
        self._index = SimilarityIndex(
            method,
            threshold,
            ngram=ngram,
            shingle=shingle,
            num_perm=num_perm,
            bands=bands,
            rows=rows,
            verify=verify,
            max_distance=max_distance,
            seed=seed,
        )

    @classmethod
    def from_index(cls, index: SimilarityIndex) -> Deduplicator:
        """Wrap an existing compiled index (shared, not copied)."""
        self = cls.__new__(cls)
        self._index = index
        return self

    @property
    def index(self) -> SimilarityIndex:
        """The compiled index, e.g. to share with the engine's dedup stages."""
        return self._index

    def add(self, text: str) -> bool:
        """Store ``text`` unless it near-duplicates a stored text; True if it was new."""
        return self._index.insert_if_new(text) is None

    def insert_if_new(self, text: str) -> int | None:
        """Like :meth:`add`, but return the position of the earlier near-duplicate
        (None if ``text`` was new and is now stored)."""
        return self._index.insert_if_new(text)

    def claim(self, text: str) -> tuple[int, int | None]:
        """:meth:`insert_if_new` plus the position ``text`` took, in one atomic call:
        ``(position, None)`` if stored, ``(position, earlier)`` if a near-duplicate.
        Safe when threads share the deduplicator (``next_position`` then
        ``insert_if_new`` is not: another thread may insert in between)."""
        return self._index.claim(text)

    def add_batch(self, texts: Iterable[str]) -> list[int | None]:
        """:meth:`insert_if_new` for each text in order, in one call that releases the
        GIL and uses every core. Later texts see earlier ones of the same batch.
        Positions are global: this batch starts at the value :attr:`seen` had."""
        return self._index.insert_if_new_many(_as_list(texts))

    async def add_batch_async(self, texts: Iterable[str]) -> list[int | None]:
        """:meth:`add_batch` in a worker thread, so the event loop keeps running."""
        batch = _as_list(texts)
        return await anyio.to_thread.run_sync(self._index.insert_if_new_many, batch)

    def query(self, text: str) -> list[Match]:
        """Stored near-duplicates of ``text``, most similar first (nothing is stored)."""
        return [Match(p, s) for p, s in self._index.query(text)]

    def query_batch(self, texts: Iterable[str]) -> list[list[Match]]:
        """:meth:`query` for many texts, in parallel."""
        return [[Match(p, s) for p, s in hits] for hits in self._index.query_many(_as_list(texts))]

    def remove(self, position: int) -> bool:
        """Forget the stored text at ``position`` (False if none is stored there)."""
        return self._index.remove(position)

    def clusters(self) -> list[list[int]]:
        """Groups of positions: a kept text first, then the texts rejected as its
        near-duplicates, in order. Only groups with at least one rejection."""
        groups: dict[int, list[int]] = {}
        for rejected, kept in self._index.duplicates():
            groups.setdefault(kept, [kept]).append(rejected)
        return [groups[k] for k in sorted(groups)]

    def jaccard(self, a: str, b: str) -> float:
        """Exact Jaccard similarity of two texts under this deduplicator's shingling."""
        return _jaccard(a, b, self._index.ngram, self._index.shingle)

    @property
    def seen(self) -> int:
        """Texts submitted so far (the position the next one takes)."""
        return self._index.next_position

    @property
    def next_position(self) -> int:
        """Alias of :attr:`seen`, for code written against the compiled index."""
        return self._index.next_position

    def __len__(self) -> int:
        """Texts stored (kept and not removed)."""
        return len(self._index)

    def memory_bytes(self) -> int:
        """Bytes held by the index structures (not the texts, which are not kept)."""
        return self._index.memory_bytes()

    @property
    def threshold(self) -> float:
        return self._index.threshold

    @property
    def method(self) -> Method:
        return self._index.method

    def to_bytes(self) -> bytes:
        """Everything needed to resume: settings, tables, stored sketches, log."""
        return self._index.to_bytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> Deduplicator:
        """Inverse of :meth:`to_bytes`; ValueError if ``data`` is not a saved index."""
        return cls.from_index(SimilarityIndex.from_bytes(data))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_bytes` to ``path`` atomically (temp file, then rename), so
        a crash mid-save never leaves a truncated file behind."""
        target = Path(path)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(self.to_bytes())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Deduplicator:
        """Read a file written by :meth:`save`."""
        return cls.from_bytes(Path(path).read_bytes())

    def __repr__(self) -> str:
        return repr(self._index).replace("SimilarityIndex", "Deduplicator", 1)


def _as_list(texts: Iterable[str]) -> Sequence[str]:
    if isinstance(texts, str):
        raise TypeError("expected an iterable of str, got a single str")
    return texts if isinstance(texts, list | tuple) else list(texts)
