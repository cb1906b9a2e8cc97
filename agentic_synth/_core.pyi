"""Type stubs for the compiled extension ``agentic_synth._core`` (Rust, PyO3).

Texts are read as UTF-8; a ``str`` holding lone surrogates (which have no UTF-8
form) is read with U+FFFD replacement characters instead of raising. Functions
and methods taking many texts accept any iterable of ``str`` except a bare
``str``, and run without the GIL on all cores.
"""

from collections.abc import Iterable, Sequence
from typing import Literal, final

__all__ = [
    "DEFAULT_SEED",
    "SampleCounter",
    "SimilarityIndex",
    "__version__",
    "estimate_jaccard",
    "fingerprint",
    "fingerprint_hex",
    "fingerprint_many",
    "hamming",
    "jaccard",
    "lsh_params",
    "lsh_probability",
    "minhash",
    "minhash_many",
    "normalize",
    "shingles",
    "simhash",
    "simhash_many",
]

__version__: str
DEFAULT_SEED: int

# Exact-repeat fingerprints (xxh3-128).

def fingerprint(data: bytes) -> bytes:
    """128-bit xxh3 fingerprint of ``data``, as 16 big-endian bytes."""

def fingerprint_hex(data: bytes) -> str:
    """128-bit xxh3 fingerprint of ``data``, as 32 lowercase hex digits."""

def fingerprint_many(items: list[bytes]) -> list[bytes]:
    """Fingerprints of many byte strings; the hashing runs without the GIL."""

# Sample identities for the response cache.

@final
class SampleCounter:
    """Occurrence counts of exact requests within a job, about 16 bytes a request."""

    def __init__(self) -> None: ...
    def next(self, fp: bytes) -> int:
        """Earlier occurrences of the request with 16-byte fingerprint ``fp``; counts this one."""

    def __len__(self) -> int: ...
    def memory_bytes(self) -> int: ...

# Similarity building blocks.

def normalize(text: str) -> str:
    """NFKC + full case folding + whitespace collapse (what shingling sees)."""

def shingles(text: str, ngram: int = 3, shingle: Literal["word", "char"] = "word") -> list[str]:
    """The shingles of the normalised text, in order (for inspection)."""

def jaccard(a: str, b: str, ngram: int = 3, shingle: Literal["word", "char"] = "word") -> float:
    """Exact Jaccard similarity of two texts' shingle sets (1.0 for two empty texts)."""

def minhash(
    text: str,
    num_perm: int = 128,
    ngram: int = 3,
    shingle: Literal["word", "char"] = "word",
    seed: int = ...,
) -> list[int]:
    """MinHash signature: ``num_perm`` unsigned 32-bit values."""

def minhash_many(
    texts: Iterable[str],
    num_perm: int = 128,
    ngram: int = 3,
    shingle: Literal["word", "char"] = "word",
    seed: int = ...,
) -> list[list[int]]:
    """MinHash signatures of many texts, in parallel."""

def estimate_jaccard(a: Sequence[int], b: Sequence[int]) -> float:
    """Share of equal slots of two signatures of the same length (ValueError otherwise)."""

def simhash(text: str, ngram: int = 3, shingle: Literal["word", "char"] = "word") -> int:
    """64-bit SimHash of the text's shingles."""

def simhash_many(
    texts: Iterable[str], ngram: int = 3, shingle: Literal["word", "char"] = "word"
) -> list[int]:
    """SimHashes of many texts, in parallel."""

def hamming(a: int, b: int) -> int:
    """Number of differing bits of two unsigned 64-bit values."""

def lsh_params(
    threshold: float,
    num_perm: int = 128,
    false_positive_weight: float = 0.5,
    false_negative_weight: float = 0.5,
) -> tuple[int, int]:
    """``(bands, rows)`` minimising the weighted false-positive and false-negative
    areas of the LSH S-curve around ``threshold``."""

def lsh_probability(similarity: float, bands: int, rows: int) -> float:
    """Chance that a pair with Jaccard ``similarity`` shares a band: 1 - (1 - s^r)^b."""

@final
class SimilarityIndex:
    """Incremental near-duplicate index over raw strings.

    Every text given to ``insert``/``insert_if_new`` (and their batch forms) takes
    the next position, stored or not. Safe to share between threads: calls are
    serialised, and a waiting call releases the GIL.
    """

    def __new__(
        cls,
        method: Literal["minhash", "simhash", "exact"] = "minhash",
        threshold: float = 0.8,
        *,
        ngram: int = 3,
        shingle: Literal["word", "char"] = "word",
        num_perm: int = 128,
        bands: int | None = None,
        rows: int | None = None,
        verify: Literal["exact", "signature", "none"] = "exact",
        max_distance: int = 3,
        seed: int = ...,
    ) -> SimilarityIndex: ...
    def insert(self, text: str) -> int:
        """Store ``text`` unconditionally; returns its position."""

    def insert_many(self, texts: Iterable[str]) -> list[int]:
        """Store many texts; returns their positions."""

    def query(self, text: str) -> list[tuple[int, float]]:
        """Stored near-duplicates as ``(position, similarity)``, most similar first."""

    def query_many(self, texts: Iterable[str]) -> list[list[tuple[int, float]]]:
        """``query`` for many texts, in parallel."""

    def insert_if_new(self, text: str) -> int | None:
        """Position of the best stored near-duplicate (``text`` is then not stored),
        or None after storing ``text``."""

    def insert_if_new_many(self, texts: Iterable[str]) -> list[int | None]:
        """``insert_if_new`` for each text in order (later texts see earlier ones)."""

    def claim(self, text: str) -> tuple[int, int | None]:
        """``insert_if_new`` that also returns the position ``text`` took, atomically:
        ``(position, None)`` if stored, ``(position, earlier)`` if a near-duplicate."""

    def remove(self, position: int) -> bool:
        """Forget the text stored at ``position``; False if there is none."""

    def __len__(self) -> int:
        """Number of stored (not removed) texts."""

    @property
    def next_position(self) -> int:
        """Position the next text will take."""

    def duplicates(self) -> list[tuple[int, int]]:
        """``(rejected position, position it duplicated)`` for every rejection."""

    def memory_bytes(self) -> int:
        """Bytes allocated by the index structures."""

    @property
    def method(self) -> Literal["minhash", "simhash", "exact"]: ...
    @property
    def threshold(self) -> float: ...
    @property
    def ngram(self) -> int: ...
    @property
    def shingle(self) -> Literal["word", "char"]: ...
    @property
    def num_perm(self) -> int: ...
    @property
    def bands(self) -> int | None:
        """LSH bands (None unless the method is MinHash)."""

    @property
    def rows(self) -> int | None:
        """Rows per LSH band (None unless the method is MinHash)."""

    @property
    def verify(self) -> Literal["exact", "signature", "none"]: ...
    @property
    def max_distance(self) -> int: ...
    @property
    def seed(self) -> int: ...
    def to_bytes(self) -> bytes:
        """Serialise everything needed to resume."""

    @staticmethod
    def from_bytes(data: bytes) -> SimilarityIndex:
        """Rebuild from ``to_bytes`` output; ValueError if the data is invalid."""

    def __reduce__(self) -> tuple[object, tuple[bytes]]: ...
