"""synth init / config / validate / doctor, and the config file driving synth generate.

Each runs in a subprocess in its own directory with a controlled environment (no
provider keys unless a test sets one), as a user would run it.
"""

from __future__ import annotations

import json
import os
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_helpers import SYNTH, one_line_error, read_rows

from agentic_synth._config import load_config, starter_config

KEY = "sk-ant-api03-" + "Zq7Xk2Lm9Pw4Rt8Yv1Bn6Cd3Fg5Hj0Ks" + "wxyz"
Run = Callable[..., subprocess.CompletedProcess[str]]

SIM_CONFIG = """\
[defaults]
max_tokens = 5
concurrency = 8

[[models]]
model = "sim:sim-1"
rpm = 100000
[models.options]
seed = 3
"""


@pytest.fixture
def run(tmp_path: Path) -> Run:
    """``synth ARGS`` in tmp_path with no provider keys or synth variables, plus ``env``."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith("_API_KEY") and not k.startswith("SYNTH_") and "BASE_URL" not in k
    }

    def go(
        *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*SYNTH, *args],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=cwd or tmp_path,
            env={**base, **(env or {})},
            check=False,
        )

    return go


def no_part_of_the_key(text: str, key: str = KEY) -> bool:
    """No 5 characters of the key's secret part (after its public sk-ant- prefix)."""
    secret = key[len("sk-ant-") :]
    return all(secret[i : i + 5] not in text for i in range(len(secret) - 4))


# -- synth init ----------------------------------------------------------------------


def test_init_writes_the_starter_and_never_overwrites_without_force(
    run: Run, tmp_path: Path
) -> None:
    proc = run("init")
    assert proc.returncode == 0, proc.stderr
    path = tmp_path / "synth.toml"
    assert path.read_text() == starter_config()
    assert proc.stdout == "" and "wrote synth.toml" in proc.stderr

    path.write_text("# mine\n")
    proc = run("init")
    assert proc.returncode == 2
    assert "synth.toml exists; pass --force" in one_line_error(proc.stderr)
    assert path.read_text() == "# mine\n"

    assert run("init", "--force").returncode == 0
    assert path.read_text() == starter_config()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synth.toml"]  # no temp left


def test_init_to_stdout_a_named_file_and_a_missing_directory(run: Run, tmp_path: Path) -> None:
    proc = run("init", "-")
    assert proc.returncode == 0 and proc.stdout == starter_config()
    assert run("init", "conf.toml").returncode == 0
    assert (tmp_path / "conf.toml").read_text() == starter_config()
    proc = run("init", "nodir/synth.toml")
    assert proc.returncode == 2 and "does not exist; create it first" in one_line_error(proc.stderr)
    proc = run("init", ".")
    assert proc.returncode == 2 and "is a directory" in one_line_error(proc.stderr)


def test_the_starter_passes_validate(run: Run) -> None:
    assert run("init").returncode == 0
    proc = run("validate")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "synth.toml: ok (2 models)\n" and proc.stderr == ""


# -- synth validate ------------------------------------------------------------------


def test_validate_lists_every_problem_with_file_table_and_key(run: Run, tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text(
        '[defaults]\nconcurrency = 0\n[[models]]\nmodel = "sim"\n'
        '[[models]]\nmodel = "sim:b"\nrpm = "fast"\n'
    )
    proc = run("validate", "--config", "bad.toml")
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert 'bad.toml: [[models]] #2: rpm must be a positive number, got "fast"' in lines
    assert "bad.toml: [defaults]: concurrency must be an integer >= 1, got 0" in lines
    assert lines[-1] == "synth: 2 problems found"
    assert "Traceback" not in proc.stderr


def test_validate_a_schema(run: Run, tmp_path: Path) -> None:
    proc = run("validate", "--schema", "builtin:users")
    assert proc.returncode == 0 and "builtin:users: ok" in proc.stdout
    (tmp_path / "s.json").write_text(
        json.dumps(
            {"type": "object", "properties": {"a": {"type": "integr"}, "b": {"minLength": -1}}}
        )
    )
    proc = run("validate", "--schema", "s.json")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("s.json: #/properties/a/type: 'integr' is not one of")
    assert lines[1].startswith("s.json: #/properties/b/minLength: -1 is less than the minimum")
    assert lines[2] == "synth: 2 problems found"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--schema", "missing.json"], "cannot read --schema missing.json: no such file"),
        (["--schema", "list.json"], "--schema list.json holds a JSON array"),
        (["--schema", "broken.json"], "--schema broken.json is not JSON: Expecting"),
        (["--schema", "builtin:nope"], "--schema builtin:nope: no such built-in schema"),
        (["--config", "missing.toml"], "missing.toml: cannot read: no such file"),
        ([], "no config file to check"),
    ],
)
def test_validate_names_an_unreadable_input(
    run: Run, tmp_path: Path, args: list[str], expected: str
) -> None:
    (tmp_path / "list.json").write_text("[1]")
    (tmp_path / "broken.json").write_text("{")
    proc = run("validate", *args)
    assert proc.returncode == 2
    assert expected in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


# -- synth config --------------------------------------------------------------------


def test_config_masks_the_key_and_prints_toml_that_loads_back(run: Run, tmp_path: Path) -> None:
    assert run("init").returncode == 0
    proc = run("config", env={"ANTHROPIC_API_KEY": KEY})
    assert proc.returncode == 0, proc.stderr
    assert 'api_key_env = "ANTHROPIC_API_KEY"' in proc.stdout
    assert "set: sk-ant-…wxyz" in proc.stdout
    assert no_part_of_the_key(proc.stdout + proc.stderr)
    (tmp_path / "effective.toml").write_text(proc.stdout)
    config = load_config(str(tmp_path / "effective.toml"))
    assert [m.name for m in config.models] == [
        "openai:meta-llama/Llama-3.1-8B-Instruct",
        "anthropic:claude-haiku-4-5",
    ]
    assert config.models[1].rpm == 4000 and config.defaults.max_tokens == 512

    proc = run("config", "--json", env={"ANTHROPIC_API_KEY": KEY})
    data = json.loads(proc.stdout)
    assert data["models"][1]["api_key"] == "sk-ant-…wxyz"
    assert data["models"][0]["api_key_env"] is None  # a vLLM server never gets the OpenAI key
    assert no_part_of_the_key(proc.stdout)


def test_config_shows_flags_over_the_file_over_the_environment(run: Run, tmp_path: Path) -> None:
    (tmp_path / "synth.toml").write_text(SIM_CONFIG)
    env = {"SYNTH_MODELS": "openai:gpt-4o-mini"}
    data = json.loads(run("config", "--json", "-c", "3", env=env).stdout)
    assert data["config_file"] == "synth.toml" and data["found_as"] == "./synth.toml"
    assert (data["defaults"]["concurrency"], data["sources"]["concurrency"]) == (3, "--concurrency")
    assert (data["defaults"]["max_tokens"], data["sources"]["max_tokens"]) == (5, "synth.toml")
    assert data["sources"]["temperature"] == "default"
    assert [m["model"] for m in data["models"]] == ["sim-1"]  # the file beats $SYNTH_MODELS
    assert data["models"][0]["options"] == {"seed": 3}

    data = json.loads(run("config", "--json", "--no-config", env=env).stdout)
    assert data["config_file"] is None and data["defaults"]["max_tokens"] == 256
    assert [(m["provider"], m["model"], m["from"]) for m in data["models"]] == [
        ("openai", "gpt-4o-mini", "$SYNTH_MODELS")
    ]

    text = run("config", "-m", "sim:sim-1", "--sim-seed", "9", "--temperature", "0.5").stdout
    assert "temperature = 0.5" in text and "# --temperature" in text
    assert "rpm = 100000.0" in text  # -m naming a model of the file takes its settings
    assert "seed = 9" in text


def test_config_found_through_the_variable(run: Run, tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "prod.toml").write_text(SIM_CONFIG)
    data = json.loads(run("config", "--json", env={"SYNTH_CONFIG": "conf/prod.toml"}).stdout)
    assert (data["config_file"], data["found_as"]) == ("conf/prod.toml", "$SYNTH_CONFIG")
    proc = run("config", env={"SYNTH_CONFIG": "conf/missing.toml"})
    assert proc.returncode == 2
    assert "SYNTH_CONFIG=conf/missing.toml: no such file" in one_line_error(proc.stderr)


# -- the config file driving a job ---------------------------------------------------


def test_generate_runs_on_the_config_files_models_and_defaults(run: Run, tmp_path: Path) -> None:
    (tmp_path / "synth.toml").write_text(SIM_CONFIG)
    proc = run("generate", "-n", "20", "-o", "out.jsonl", "-q")
    assert proc.returncode == 0, proc.stderr
    rows = read_rows(tmp_path / "out.jsonl")
    assert len(rows) == 20
    assert all(r["ok"] and r["model"] == "sim:sim-1" and r["output_tokens"] <= 5 for r in rows)
    proc = run("generate", "-n", "5", "-o", "out2.jsonl", "-q", "--max-tokens", "2")
    assert all(r["output_tokens"] <= 2 for r in read_rows(tmp_path / "out2.jsonl"))


def test_a_fallback_from_the_config_file_takes_over(run: Run, tmp_path: Path) -> None:
    (tmp_path / "synth.toml").write_text(
        "[defaults]\nmax_tokens = 4\n"
        '[[models]]\nmodel = "sim:down"\n[models.options]\nfault_500 = 1.0\n'
        '[[models]]\nmodel = "sim:up"\n'
    )
    proc = run("generate", "-n", "10", "-o", "out.jsonl", "-q")
    assert proc.returncode == 0, proc.stderr
    rows = read_rows(tmp_path / "out.jsonl")
    assert len(rows) == 10 and all(r["ok"] and r["model"] == "sim:up" for r in rows)


OLD = "an earlier run's results\n"


@pytest.mark.parametrize(
    ("config", "env", "expected"),
    [
        (
            '[[models]]\nmodel = "sim"\nrpm = "fast"\n',
            {},
            'synth.toml: [[models]] #1: rpm must be a positive number, got "fast"',
        ),
        (
            f'[[models]]\nmodel = "anthropic:claude-haiku-4-5"\napi_key = "{KEY}"\n',
            {},
            "synth.toml: [[models]] #1: api_key holds a secret in the file",
        ),
        (
            '[[models]]\nmodel = "anthropic:claude-haiku-4-5"\napi_key_env = "MY_KEY"\n',
            {},
            "synth.toml: [[models]] #1 (anthropic:claude-haiku-4-5): api_key_env names MY_KEY, "
            "which is not set",
        ),
        ("[[models]\n", {}, "synth.toml: not valid TOML"),
        (
            "[defaults]\nmax_tokens = 0\ntemperature = 5\n",
            {},
            "max_tokens must be an integer >= 1, got 0 (and 1 more problem: synth validate",
        ),
    ],
)
def test_a_config_problem_stops_generate_before_the_output_is_touched(
    run: Run, tmp_path: Path, config: str, env: dict[str, str], expected: str
) -> None:
    (tmp_path / "synth.toml").write_text(config)
    (tmp_path / "out.jsonl").write_text(OLD)
    proc = run("generate", "-n", "3", "-o", "out.jsonl", env=env)
    assert proc.returncode == 2
    line = one_line_error(proc.stderr)
    assert line.startswith("synth: error: ") and expected in line, line
    assert no_part_of_the_key(proc.stderr)
    assert (tmp_path / "out.jsonl").read_text() == OLD


def test_a_key_from_the_named_variable_reaches_the_model(run: Run, tmp_path: Path) -> None:
    (tmp_path / "synth.toml").write_text(
        '[[models]]\nmodel = "sim:sim-1"\napi_key_env = "SIM_KEY"\n'
    )
    proc = run("generate", "-n", "2", "-o", "out.jsonl", "-q", env={"SIM_KEY": "k" * 30})
    assert proc.returncode == 0, proc.stderr
    proc = run("generate", "-n", "2", "-o", "out.jsonl", "-q")
    assert proc.returncode == 2 and "api_key_env names SIM_KEY" in one_line_error(proc.stderr)


# -- synth doctor --------------------------------------------------------------------


def test_doctor_ready_on_the_simulator(run: Run, tmp_path: Path) -> None:
    (tmp_path / "synth.toml").write_text(SIM_CONFIG)
    proc = run("doctor", env={"ANTHROPIC_API_KEY": KEY})
    assert proc.returncode == 0, proc.stdout
    out = proc.stdout
    assert "✓ Python 3." in out and "✓ compiled core loaded" in out
    assert "tokenizer" in out
    assert "✓ config synth.toml (found as ./synth.toml): 1 model, valid" in out
    assert "✓ ANTHROPIC_API_KEY is set" in out and "✗ OPENAI_API_KEY is not set" in out
    assert "✓ model sim:sim-1 ready" in out
    assert f"✓ output directory {tmp_path} is writable" in out
    assert out.rstrip().endswith("ready: nothing a job needs is missing")
    assert KEY not in out and "wxyz" not in out  # set or not; never the value, not even masked


def test_doctor_names_what_a_job_would_miss_with_the_fix(run: Run, tmp_path: Path) -> None:
    assert run("init").returncode == 0
    proc = run("doctor", "--output-dir", "nodir")
    assert proc.returncode == 1
    out = proc.stdout
    assert "✗ ANTHROPIC_API_KEY is not set (needed by anthropic:claude-haiku-4-5)" in out
    assert "fix: export ANTHROPIC_API_KEY=..." in out
    assert "✗ output directory nodir does not exist" in out
    assert out.rstrip().endswith("2 problems a job would hit")


def test_doctor_reports_a_broken_config_without_a_traceback(run: Run, tmp_path: Path) -> None:
    (tmp_path / "synth.toml").write_text('[[models]]\nmodel = "sim"\nrpm = "fast"\n')
    proc = run("doctor")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "✗ configuration: synth.toml: [[models]] #1: rpm must be a positive number" in (
        proc.stdout
    )


def test_toml_output_of_config_is_parseable_with_options_and_headers(
    run: Run, tmp_path: Path
) -> None:
    (tmp_path / "synth.toml").write_text(
        '[[models]]\nprovider = "openai"\nmodel = "llama3:8b"\nbase_url = "http://h:1/v1"\n'
        '[models.options]\nconnect_timeout = 2\n[models.options.headers]\nX-Team = "data"\n'
        '[models.headers_env]\nX-Gateway-Key = "GW"\n'
    )
    proc = run("config", env={"GW": "gateway-secret-value"})
    assert proc.returncode == 0, proc.stderr
    parsed = tomllib.loads(proc.stdout)
    (model,) = parsed["models"]
    assert model["options"] == {"connect_timeout": 2, "headers": {"X-Team": "data"}}
    assert model["headers_env"] == {"X-Gateway-Key": "GW"}
    assert "gateway-secret-value" not in proc.stdout
