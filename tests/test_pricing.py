"""Prices: the shipped table, a spec's own prices, the cost of a usage, worst cases."""

from __future__ import annotations

import tomllib
from importlib import resources

import pytest

from agentic_synth import ConfigurationError, ModelSpec, Usage
from agentic_synth._pricing import PriceTable, price_table, prices_for, worst_case_input_tokens
from agentic_synth._request import GenerationParams, build_request

M = 1e-6  # per million tokens


def test_the_shipped_table_is_dated_and_prices_current_models() -> None:
    table = price_table()
    assert table.as_of >= "2026-01-01" and len(table) >= 15
    haiku = table.lookup("anthropic", "claude-haiku-4-5")
    assert haiku is not None
    assert (haiku.input, haiku.output) == pytest.approx((1 * M, 5 * M))
    # Anthropic's multipliers fill what the entry leaves out
    assert haiku.cache_write == pytest.approx(1.25 * M)
    assert haiku.cache_write_1h == pytest.approx(2 * M)
    assert haiku.cache_read == pytest.approx(0.1 * M)
    assert (haiku.batch_input, haiku.batch_output) == pytest.approx((0.5 * M, 2.5 * M))
    mini = table.lookup("openai", "gpt-4o-mini")
    assert mini is not None and mini.cache_read == pytest.approx(0.075 * M)
    assert mini.cache_write == pytest.approx(mini.input)  # OpenAI: no write premium


def test_dated_snapshots_and_latest_aliases_find_their_model_but_prefixes_do_not() -> None:
    table = price_table()
    assert table.lookup("anthropic", "claude-haiku-4-5-20251001") == table.lookup(
        "anthropic", "claude-haiku-4-5"
    )
    assert table.lookup("openai", "gpt-4o-2024-08-06") == table.lookup("openai", "gpt-4o")
    assert table.lookup("anthropic", "claude-sonnet-4-5-latest") is not None
    # gpt-4o-mini is its own model, never priced as gpt-4o
    assert table.lookup("openai", "gpt-4o-mini") != table.lookup("openai", "gpt-4o")
    assert table.lookup("openai", "gpt-4o-mini-tts") is None
    assert table.lookup("openai", "meta-llama/Llama-3.1-8B-Instruct") is None


def test_an_unknown_model_has_no_price_never_zero() -> None:
    assert prices_for(ModelSpec("openai:my-finetune", base_url="http://x/v1")) is None


def test_a_spec_prices_a_model_the_table_does_not_know() -> None:
    prices = prices_for(ModelSpec("openai:llama", input_price=2e-7, output_price=4e-7))
    assert prices is not None and prices.source == "ModelSpec"
    assert (prices.batch_input, prices.batch_output) == pytest.approx((1e-7, 2e-7))
    assert prices.cache_read == pytest.approx(2e-7 * 0.5)  # OpenAI's default read price


def test_half_a_price_for_an_unknown_model_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="output_price"):
        prices_for(ModelSpec("openai:llama", input_price=2e-7))


def test_a_spec_overrides_the_table_price_by_price() -> None:
    prices = prices_for(ModelSpec("anthropic:claude-haiku-4-5", output_price=4e-6))
    assert prices is not None
    assert prices.input == pytest.approx(1 * M)  # the table's
    assert prices.output == pytest.approx(4e-6)  # its own
    assert prices.batch_output == pytest.approx(2e-6)  # half of its own
    assert prices.batch_input == pytest.approx(0.5 * M)  # still the table's
    own_read = prices_for(ModelSpec("anthropic:claude-haiku-4-5", cache_read_price=0.0))
    assert own_read is not None and own_read.cache_read == 0.0
    assert own_read.cache_write == pytest.approx(1.25 * M)


def test_plain_usage_costs_input_plus_output() -> None:
    prices = prices_for(ModelSpec("sim", "a", input_price=3e-6, output_price=15e-6))
    assert prices is not None
    assert prices.cost(Usage(1000, 100)) == pytest.approx(1000 * 3e-6 + 100 * 15e-6)


def test_prompt_cache_writes_and_reads_have_their_own_prices() -> None:
    prices = prices_for(ModelSpec("anthropic:x", input_price=3e-6, output_price=15e-6))
    assert prices is not None
    read = Usage(4000, 100, cache_read_input_tokens=3000)
    assert prices.cost(read) == pytest.approx(1000 * 3e-6 + 3000 * 0.3e-6 + 100 * 15e-6)
    first = Usage(4000, 100, cache_creation_input_tokens=3000)
    assert prices.cost(first) == pytest.approx(1000 * 3e-6 + 3000 * 3.75e-6 + 100 * 15e-6)
    hour = Usage(4000, 0, cache_creation_input_tokens=3000, cache_creation_1h_input_tokens=2000)
    assert prices.cost(hour) == pytest.approx(1000 * 3e-6 + 1000 * 3.75e-6 + 2000 * 6e-6)
    own = prices_for(
        ModelSpec(
            "anthropic:x",
            input_price=3e-6,
            output_price=0.0,
            cache_write_price=6e-6,
            cache_read_price=0.0,
        )
    )
    assert own is not None
    assert own.cost(first) == pytest.approx(1000 * 3e-6 + 3000 * 6e-6)


def test_the_batch_discount_halves_every_kind_of_token() -> None:
    prices = price_table().lookup("anthropic", "claude-sonnet-4-5")
    assert prices is not None
    for usage in (
        Usage(1000, 500),
        Usage(4000, 100, cache_read_input_tokens=3000),
        Usage(4000, 100, cache_creation_input_tokens=3000, cache_creation_1h_input_tokens=1000),
    ):
        assert prices.cost(usage, batch=True) == pytest.approx(prices.cost(usage) / 2)


def test_the_worst_case_bounds_every_way_of_billing_the_same_tokens() -> None:
    prices = price_table().lookup("anthropic", "claude-opus-4-5")
    assert prices is not None
    worst = prices.worst_case(4000, 100)
    for usage in (
        Usage(4000, 100),
        Usage(4000, 100, cache_creation_input_tokens=4000),
        Usage(4000, 100, cache_creation_input_tokens=4000, cache_creation_1h_input_tokens=4000),
        Usage(4000, 100, cache_read_input_tokens=4000),
    ):
        assert prices.cost(usage) <= worst + 1e-15
        assert prices.cost(usage, batch=True) <= prices.worst_case(4000, 100, batch=True) + 1e-15


@pytest.mark.parametrize(
    "prompt",
    ["hello", "é" * 500 + "日本語のテキスト" * 50, "word " * 5000, "🙂" * 300],
)
def test_the_input_bound_is_at_least_the_real_token_count(prompt: str) -> None:
    from agentic_synth.routing._tokens import TokenCounter

    request = build_request(
        {"prompt": prompt, "system": "Be brief."}, GenerationParams(max_tokens=16)
    )
    counted = TokenCounter().count_messages(request.messages, request.system)
    assert worst_case_input_tokens(request) >= counted
    # and the simulator's own count (one token per 4 characters)
    assert worst_case_input_tokens(request) >= (len(request.prompt_text()) + 3) // 4


def test_a_malformed_table_is_reported_with_its_origin() -> None:
    with pytest.raises(ConfigurationError, match=r"prices\.toml is malformed"):
        PriceTable({"as_of": "2026-01-01", "models": [{"provider": "x", "names": ["a"]}]})
    with pytest.raises(ConfigurationError, match="malformed"):
        PriceTable({"models": []})


def test_the_data_file_is_package_data() -> None:
    text = resources.files("agentic_synth").joinpath("data", "prices.toml").read_text("utf-8")
    data = tomllib.loads(text)
    assert data["sources"]["anthropic"].startswith("https://")
    assert all("names" in entry and "input" in entry for entry in data["models"])
