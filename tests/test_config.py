"""The synth.toml model: every problem named with file, table and key; no key ever in it."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from agentic_synth import ConfigurationError
from agentic_synth._config import (
    ConfigProblems,
    check_config,
    find_config,
    load_config,
    looks_like_key,
    mask_key,
    parse_config,
    starter_config,
)

KEY = "sk-ant-api03-" + "Q" * 40 + "wxyz"


def problems_of(text: str, name: str = "synth.toml") -> list[str]:
    config, problems = parse_config(tomllib.loads(text), name)
    assert (config is None) == bool(problems)
    return problems


def write(tmp_path: Path, text: str, name: str = "synth.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_the_starter_config_is_valid_and_a_vllm_then_anthropic_fallback() -> None:
    config, problems = parse_config(tomllib.loads(starter_config()), "synth.toml")
    assert problems == [] and config is not None
    first, second = config.models
    assert (first.provider, first.base_url) == ("openai", "http://localhost:8000/v1")
    assert (second.name, second.api_key_env) == ("anthropic:claude-haiku-4-5", "ANTHROPIC_API_KEY")
    # prices come from the shipped table: the starter file does not repeat them
    assert second.input_price is None and second.rpm == 4000
    assert first.input_price == 0.0 and first.output_price == 0.0  # own hardware
    assert config.defaults.concurrency == 128


def test_a_full_model_table_becomes_a_model_spec_with_its_key_from_the_named_variable() -> None:
    config, problems = parse_config(
        tomllib.loads(
            """
            [[models]]
            provider = "openai"
            model = "llama3:8b"
            base_url = "http://gpu-1:8000/v1"
            api_key_env = "VLLM_KEY"
            weight = 2
            rpm = 600
            input_tpm = 1e6
            output_tpm = 2e5
            max_in_flight = 32
            timeout = 30
            input_price = 0
            output_price = 0
            cache_read_price = 0
            [models.options]
            connect_timeout = 3
            [models.headers_env]
            X-Gateway-Key = "GW_KEY"
            """
        ),
        "synth.toml",
    )
    assert problems == [] and config is not None
    (entry,) = config.models
    spec = entry.spec({"VLLM_KEY": " secret-value-1234 \n", "GW_KEY": "gw"})
    assert spec.name == "openai:llama3:8b"  # provider given apart: the colon is the model's
    assert spec.api_key == "secret-value-1234"
    assert (spec.weight, spec.rpm, spec.max_in_flight, spec.timeout) == (2.0, 600.0, 32, 30.0)
    assert spec.options["headers"] == {"X-Gateway-Key": "gw"}
    assert spec.options["connect_timeout"] == 3
    with pytest.raises(ConfigurationError) as err:
        entry.spec({})
    assert str(err.value).startswith(
        "synth.toml: [[models]] #1 (openai:llama3:8b): api_key_env names VLLM_KEY, which is not set"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[[models]]\nmodel = "sim"\n[[models]]\nmodel = "sim:b"\nrpm = "fast"',
            'synth.toml: [[models]] #2: rpm must be a positive number, got "fast"',
        ),
        ('[[models]]\nmodel = "sim"\nrpm = -1', "[[models]] #1: rpm must be a positive number"),
        ('[[models]]\nmodel = "sim"\nrpm = nan', "rpm must be a positive number, got nan"),
        ('[[models]]\nmodel = "sim"\ntimeout = true', "timeout must be a positive number"),
        ('[[models]]\nmodel = "sim"\nmax_in_flight = 1.5', "max_in_flight must be an integer >= 1"),
        ('[[models]]\nmodel = "sim"\nrmp = 5', "[[models]] #1: unknown key rmp; did you mean rpm?"),
        ("[[models]]\nrpm = 5", '[[models]] #1: model is missing; e.g. model = "anthropic:'),
        ('[[models]]\nmodel = "llama-3"', "[[models]] #1: model: model 'llama-3' has no provider"),
        ('[[models]]\nprovider = "vllm"\nmodel = "x"', "provider must be one of anthropic, openai"),
        ('[[models]]\nmodel = "openai:x"\nbase_url = "localhost:8000"', "base_url must be an http"),
        ('[[models]]\nmodel = "sim"\ninput_price = 3', "input_price is USD per token"),
        ('[[models]]\nmodel = "sim"\noutput_price = -1', "output_price must be a number >= 0"),
        ('[[models]]\nmodel = "sim"\nverify = 1', "verify must be true, false or the path"),
        ('[[models]]\nmodel = "sim"\noptions = 3', "options must be a table"),
        (
            '[[models]]\nmodel = "sim"\n[models.options]\nlatncy = 1',
            "synth.toml: [[models]] #1 (sim:sim-1): unknown sim option(s) 'latncy'",
        ),
        (
            '[[models]]\nmodel = "openai:x"\nbase_url = "http://a/v1"\n'
            '[[models]]\nmodel = "openai:x"\nbase_url = "http://a/v1"',
            "[[models]] #2: openai:x at http://a/v1 repeats [[models]] #1",
        ),
        ("[models]\nmodel = 'sim'", "models must be [[models]] tables"),
        ("[default]\nmax_tokens = 5", "unknown table [default]; did you mean defaults?"),
        ("[defaults]\nmax_tokens = 0", "synth.toml: [defaults]: max_tokens must be an integer"),
        ("[defaults]\nconcurrency = 'lots'", 'concurrency must be an integer >= 1, got "lots"'),
        ("[defaults]\ntemperature = 3", "[defaults]: temperature must be in [0, 2], got 3"),
        ("[defaults]\nsystem = 5", "system must be a string, got 5"),
        ("[defaults]\ncache_mode = 'all'", "cache_mode must be one of samples, shared"),
        ("[defaults]\nmemory_limit = 'big'", 'memory_limit must be a size such as "512MB"'),
        ("[defaults]\nstrategy = 'fastest'", "strategy must be one of priority, round_robin"),
        ("[defaults]\nmax_token = 5", "unknown key max_token; did you mean max_tokens?"),
    ],
)
def test_each_problem_names_the_file_the_table_and_the_key(text: str, expected: str) -> None:
    problems = problems_of(text)
    assert problems, text
    assert any(expected in p for p in problems), problems
    assert all(p.startswith("synth.toml: ") for p in problems)


def test_every_problem_is_listed_and_load_raises_with_the_first(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[defaults]\nmax_tokens = 0\ntemperature = 9\n[[models]]\nmodel = "sim"\nrpm = "x"\n',
    )
    config, problems = check_config(path)
    assert config is None and len(problems) == 3
    with pytest.raises(ConfigProblems) as err:
        load_config(path)
    assert err.value.problems == problems
    assert str(err.value).startswith(problems[0])
    assert f"and 2 more problems: synth validate --config {path} lists them" in str(err.value)


@pytest.mark.parametrize(
    "text",
    [
        f'[[models]]\nmodel = "anthropic:claude-haiku-4-5"\napi_key = "{KEY}"',
        f'[[models]]\nmodel = "anthropic:claude-haiku-4-5"\nkey = "{KEY}"',
        f'[[models]]\nmodel = "anthropic:claude-haiku-4-5"\napi_key_env = "{KEY}"',
        f'[[models]]\nmodel = "openai:x"\nbase_url = "http://a"\n[models.options]\nx = "{KEY}"',
        f'[[models]]\nmodel = "openai:x"\nbase_url = "http://a"\n'
        f'[models.options.headers]\nAuthorization = "Bearer {KEY}"',
        '[[models]]\nmodel = "openai:x"\nbase_url = "http://a"\n'
        '[models.options.headers]\nX-Api-Key = "short"',
    ],
)
def test_a_key_in_the_file_is_refused_without_showing_it(text: str) -> None:
    problems = problems_of(text)
    assert problems
    joined = "\n".join(problems)
    assert "secret" in joined or "looks like a key" in joined
    assert "api_key_env" in joined or "headers_env" in joined
    assert "QQQQ" not in joined and "wxyz" not in joined and "short" not in joined


def test_a_bad_variable_name_is_refused() -> None:
    (problem,) = problems_of('[[models]]\nmodel = "sim"\napi_key_env = "MY KEY"')
    assert "api_key_env must be the name of an environment variable" in problem


def test_unreadable_and_malformed_files_are_named(tmp_path: Path) -> None:
    _, problems = check_config(write(tmp_path, "[[models]\n"))
    assert problems[0].startswith(f"{tmp_path / 'synth.toml'}: not valid TOML: ")
    assert "line 1" in problems[0]
    (tmp_path / "bin.toml").write_bytes(b"x = '\xff'")
    _, problems = check_config(str(tmp_path / "bin.toml"))
    assert "not UTF-8" in problems[0] or "not valid TOML" in problems[0]


def test_a_relative_cache_path_is_taken_from_the_config_files_directory(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    path = write(tmp_path, '[defaults]\ncache = "runs/cache.db"\n', "conf/synth.toml")
    assert load_config(path).defaults.cache == str(tmp_path / "conf" / "runs" / "cache.db")
    path = write(tmp_path, '[defaults]\ncache = "redis://localhost/0"\n', "conf/r.toml")
    assert load_config(path).defaults.cache == "redis://localhost/0"


def test_find_config_order_flag_then_variable_then_working_directory(tmp_path: Path) -> None:
    local = write(tmp_path, "")
    other = write(tmp_path, "", "other.toml")
    assert find_config(None, environ={}, cwd=tmp_path) == (local, "./synth.toml")
    assert find_config(None, environ={"SYNTH_CONFIG": other}, cwd=tmp_path) == (
        other,
        "$SYNTH_CONFIG",
    )
    assert find_config(local, environ={"SYNTH_CONFIG": other}, cwd=tmp_path) == (
        local,
        "--config",
    )
    assert find_config(None, environ={"SYNTH_CONFIG": ""}, cwd=tmp_path / "x") is None
    with pytest.raises(ConfigurationError, match=r"SYNTH_CONFIG=nope\.toml: no such file"):
        find_config(None, environ={"SYNTH_CONFIG": "nope.toml"}, cwd=tmp_path)
    with pytest.raises(ConfigurationError, match="is a directory"):
        find_config(str(tmp_path), environ={}, cwd=tmp_path)


@pytest.mark.parametrize(
    ("key", "masked"),
    [
        (KEY, "sk-ant-…wxyz"),
        ("sk-proj-" + "A" * 40 + "1234", "sk-proj-…1234"),
        ("opaque" + "b" * 30 + "9876", "…9876"),
        ("short-key", "****"),
        ("", "****"),
    ],
)
def test_mask_key_shows_the_kind_and_four_characters_at_most(key: str, masked: str) -> None:
    assert mask_key(key) == masked


def test_looks_like_key() -> None:
    assert looks_like_key(KEY) and looks_like_key("Bearer sk-abcdefghijklmnopqrstu")
    assert not looks_like_key("ANTHROPIC_API_KEY")
    assert not looks_like_key("meta-llama/Llama-3.1-8B-Instruct")
    assert not looks_like_key("http://localhost:8000/v1")
