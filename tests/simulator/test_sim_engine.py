"""The outcome engine: determinism, repeat counting, text shape, corpus slicing."""

from __future__ import annotations

import json

import pytest

from agentic_synth._request import canonical_bytes
from agentic_synth._types import Request
from agentic_synth.simulator import SimConfig, Simulator, estimate_tokens
from agentic_synth.simulator._engine import _SeenCounter
from agentic_synth.simulator._text import Corpus, corpus


def _request(text: str = "hello", **kwargs: object) -> Request:
    return Request(messages=[{"role": "user", "content": text}], max_tokens=300, **kwargs)  # type: ignore[arg-type]


def test_same_seed_same_sequence_same_outcomes() -> None:
    config = SimConfig(seed=4, fault_500=0.2, latency="lognormal:0.1,0.5")
    a, b = Simulator(config), Simulator(config)
    requests = [_request(f"q{i % 7}") for i in range(50)]
    assert [a.decide(r) for r in requests] == [b.decide(r) for r in requests]


def test_outcome_depends_on_repeat_count_not_on_other_requests() -> None:
    a, b = Simulator(SimConfig(seed=1)), Simulator(SimConfig(seed=1))
    first = a.decide(_request("x"))
    for i in range(100):
        b.decide(_request(f"noise {i}"))
    assert b.decide(_request("x")) == first
    assert a.decide(_request("x")).text != first.text


def test_canonical_bytes_cover_what_shapes_the_answer() -> None:
    base = canonical_bytes(_request())
    variants = [
        _request("other"),
        _request(system="be brief"),
        _request(temperature=0.5),
        _request(top_p=0.9),
        _request(stop=("x",)),
        _request(json_schema={"type": "object"}),
        Request(messages=[{"role": "assistant", "content": "hello"}], max_tokens=300),
        Request(messages=[{"role": "user", "content": "hello"}], max_tokens=301),
    ]
    keys = {canonical_bytes(r) for r in variants}
    assert base not in keys and len(keys) == len(variants)
    assert canonical_bytes(_request(timeout=5.0)) == base  # the deadline does not shape text


def test_seen_counter_keeps_counts_across_one_rotation() -> None:
    counter = _SeenCounter(generation=4)
    assert [counter.next(1) for _ in range(3)] == [0, 1, 2]
    for key in range(100, 104):  # fills the current generation and rotates
        counter.next(key)
    assert counter.next(1) == 3
    for key in range(200, 212):  # two more rotations: key 1 is forgotten
        counter.next(key)
    assert counter.next(1) == 0


def test_fault_rates_and_arrival_failures() -> None:
    sim = Simulator(SimConfig(fault_429=0.25, fault_timeout=0.25, seed=2))
    kinds = [sim.decide(_request(f"r{i}")).fault for i in range(4000)]
    assert kinds.count("429") / 4000 == pytest.approx(0.25, abs=0.03)
    assert kinds.count("timeout") / 4000 == pytest.approx(0.25, abs=0.03)
    first = Simulator(SimConfig(fail_first_n=3, fail_first_kind="reset"))
    assert [first.decide(_request()).fault for _ in range(5)] == ["reset"] * 3 + [None] * 2


def test_fault_detail_draw_is_spread() -> None:
    sim = Simulator(SimConfig(fault_truncate=1.0))
    extras = [sim.decide(_request(f"r{i}")).u_extra for i in range(500)]
    assert 0 <= min(extras) < 0.1 and 0.9 < max(extras) < 1


def test_prose_shape() -> None:
    sim = Simulator(SimConfig(output_tokens=40))
    for i in range(200):
        outcome = sim.decide(_request(f"p{i}"))
        assert outcome.output_tokens == len(outcome.text.split())
        assert outcome.text == outcome.text.strip()
        assert outcome.text[0].isupper()
        if outcome.finish == "end":
            assert outcome.text.endswith((".", "?"))
            assert outcome.output_tokens >= 20
        else:
            assert outcome.finish == "max_tokens" and outcome.output_tokens == 300


def test_usage_estimate() -> None:
    assert estimate_tokens("") == 1
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("abcde") == 2
    outcome = Simulator().decide(_request("x" * 40, system="y" * 39))
    assert outcome.input_tokens == estimate_tokens("y" * 39 + "\n" + "x" * 40) == 20


@pytest.mark.parametrize("chunk", [1, 2, 3, 7])
def test_pieces_rebuild_the_text(chunk: int) -> None:
    sim = Simulator()
    prose = sim.decide(_request())
    pieces = prose.pieces(chunk)
    assert "".join(pieces) == prose.text
    assert len(pieces) == -(-prose.output_tokens // chunk)
    data = sim.decide(_request(json_schema={"type": "array", "items": {"type": "string"}}))
    json.loads("".join(data.pieces(chunk)))
    assert all(len(p) <= 4 * chunk for p in data.pieces(chunk))


def test_stop_sequence_outcome() -> None:
    outcome = Simulator().decide(_request(stop=(".",)))
    assert outcome.finish == "stop_sequence"
    assert outcome.stop_sequence == "."
    assert "." not in outcome.text
    assert outcome.output_tokens == len(outcome.text.split())


def test_stream_seconds() -> None:
    sim = Simulator(SimConfig(tokens_per_s=20))
    outcome = sim.decide(_request())
    assert sim.stream_seconds(outcome) == pytest.approx((outcome.output_tokens - 1) / 20)
    assert Simulator().stream_seconds(outcome) == 0.0


def test_corpus_text_cuts_and_wraps() -> None:
    small = Corpus(n_words=200, seed=1)
    last = len(small) - 1
    # Start at the last sentence and ask for more words than the corpus holds.
    text, count, cut = small.text(last, 450, 10_000)
    assert not cut and count >= 450 and len(text.split()) == count
    text, count, cut = small.text(last, 450, 333)
    assert cut and count == 333 and len(text.split()) == 333
    text, count, cut = small.text(0, 1, 1)
    assert count == 1 and cut == (len(small.sentences[0].split()) > 1)


def test_shared_corpus_is_plain_english() -> None:
    words = {w.strip(",.?").lower() for s in corpus().sentences[:500] for w in s.split()}
    assert 150 < len(words) < 600
    assert all(w.isalpha() for w in words)


# -- request-independent gates: forbidden prompts, unauthorized --------------------------


def test_forbidden_depends_on_the_prompt_and_seed_only() -> None:
    config = SimConfig(forbidden=0.05, seed=8)
    sim = Simulator(config)
    prompts = [f"item {i}" for i in range(4000)]
    blocked = [p for p in prompts if sim.is_forbidden(p)]
    assert 120 <= len(blocked) <= 280  # ~5%
    # the same prompts on every attempt, whatever the other request fields, and for
    # another simulator with the same config
    again = Simulator(config)
    for prompt in blocked[:20]:
        assert all(sim.decide(_request(prompt)).fault == "forbidden" for _ in range(3))
        assert again.decide(_request(prompt, temperature=0.3)).fault == "forbidden"
    # another seed blocks other prompts
    other = Simulator(SimConfig(forbidden=0.05, seed=9))
    assert {p for p in prompts if other.is_forbidden(p)} != set(blocked)
    assert not Simulator(SimConfig()).is_forbidden(blocked[0])


def test_forbidden_share_of_one_blocks_everything() -> None:
    sim = Simulator(SimConfig(forbidden=1.0))
    assert all(sim.is_forbidden(f"x{i}") for i in range(100))


def test_forbidden_comes_before_other_faults_and_arrivals() -> None:
    config = SimConfig(forbidden=0.3, fault_500=1.0, fail_first_n=2, fail_first_kind="529", seed=2)
    sim = Simulator(config)
    faults = [sim.decide(_request(f"q{i}")).fault for i in range(30)]
    assert "forbidden" in faults
    assert [f for f in faults if f != "forbidden"][:3] == ["529", "529", "500"]


def test_unauthorized_fails_every_request() -> None:
    sim = Simulator(SimConfig(unauthorized=True, fail_first_n=5))
    assert {sim.decide(_request(f"q{i}")).fault for i in range(20)} == {"unauthorized"}
