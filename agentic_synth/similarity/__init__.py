"""Near-duplicate detection over raw strings, compiled in Rust.

:class:`Deduplicator` is the streaming filter (``add``, ``add_batch``, ``query``,
``clusters``, save/load); :class:`SimilarityIndex` is the compiled index behind
it. The functions expose the building blocks: the normalisation and shingling
every method applies, MinHash and SimHash sketches, exact Jaccard, and the LSH
banding choice. See ``docs/similarity.md`` for methods, accuracy and speed.
"""

from .._core import (
    DEFAULT_SEED,
    SimilarityIndex,
    estimate_jaccard,
    hamming,
    jaccard,
    lsh_params,
    lsh_probability,
    minhash,
    minhash_many,
    normalize,
    shingles,
    simhash,
    simhash_many,
)
from ._dedup import Deduplicator, Match, Method, Shingle, Verify

__all__ = [
    "DEFAULT_SEED",
    "Deduplicator",
    "Match",
    "Method",
    "Shingle",
    "SimilarityIndex",
    "Verify",
    "estimate_jaccard",
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
