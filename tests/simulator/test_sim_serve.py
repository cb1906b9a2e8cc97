"""Command-line options, the child-process server and ``python -m agentic_synth.simulator``."""

from __future__ import annotations

import argparse
import json

import httpx
import pytest

from agentic_synth._exceptions import ConfigurationError
from agentic_synth.simulator import (
    SimConfig,
    add_mock_server_arguments,
    config_from_args,
    spawn_mock_server,
    uniform,
)

MESSAGES = [{"role": "user", "content": "hello"}]


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_mock_server_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults_give_default_config() -> None:
    args = _parse()
    assert config_from_args(args) == SimConfig()
    assert (args.host, args.port) == ("127.0.0.1", 8000)


def test_flags_set_config_fields() -> None:
    args = _parse(
        "--port", "9000", "--latency", "uniform:0.05,0.2", "--fault-500", "0.1",
        "--fault-stream-error", "0.05", "--tokens-per-s", "80", "--seed", "3",
        "--retry-after", "2", "--fail-first-n", "4", "--fail-first-kind", "529",
    )  # fmt: skip
    config = config_from_args(args)
    assert args.port == 9000
    assert config.latency == uniform(0.05, 0.2)
    assert config.fault_500 == 0.1
    assert config.fault_stream_error == 0.05
    assert config.tokens_per_s == 80
    assert (config.seed, config.retry_after) == (3, 2)
    assert (config.fail_first_n, config.fail_first_kind) == (4, "529")


def test_flags_override_config_json() -> None:
    base = SimConfig(seed=5, output_tokens=9, latency=uniform(0.1, 0.3))
    args = _parse("--config-json", json.dumps(base.to_mapping()), "--seed", "6")
    config = config_from_args(args)
    assert config.seed == 6
    assert config.output_tokens == 9
    assert config.latency == base.latency


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (("--fault-429", "1.5"), "fault_429"),
        (("--fault-429", "0.6", "--fault-500", "0.6"), "add up"),
        (("--latency", "gamma:1,2"), "lognormal"),
        (("--config-json", "[1]"), "JSON object"),
        (("--config-json", '{"nope": 1}'), "nope"),
    ],
)
def test_bad_options_are_configuration_errors(argv: tuple[str, ...], needle: str) -> None:
    with pytest.raises(ConfigurationError, match=needle):
        config_from_args(_parse(*argv))


def test_spawned_server_answers_and_stops() -> None:
    config = SimConfig(seed=2, output_tokens=5)
    with spawn_mock_server(config, api_key="spawn-key") as url:
        assert url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=url) as client:
            denied = client.post(
                "/v1/messages", json={"model": "m", "max_tokens": 9, "messages": MESSAGES}
            )
            ok = client.post(
                "/v1/messages",
                json={"model": "m", "max_tokens": 100, "messages": MESSAGES},
                headers={"x-api-key": "spawn-key"},
            )
    assert denied.status_code == 401
    assert ok.status_code == 200
    assert ok.json()["usage"]["output_tokens"] < 30
    with pytest.raises(httpx.ConnectError), httpx.Client() as client:
        client.get(url + "/v1/messages")


def test_spawn_reports_a_startup_failure() -> None:
    with (
        spawn_mock_server(SimConfig()) as url,
        pytest.raises(ConfigurationError, match="failed to start"),
        spawn_mock_server(SimConfig(), port=int(url.rsplit(":", 1)[1])),
    ):
        pass
