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


def test_chaos_flags_set_config_fields() -> None:
    args = _parse(
        "--fault-quota", "0.1", "--forbidden", "0.01", "--unauthorized", "--fault-not-found", "0.2",
        "--fault-redirect", "0.1", "--redirect-status", "301", "--redirect-location", "https://x/",
        "--fault-long-retry-after", "0.1", "--long-retry-after", "90", "--fault-no-retry", "0.1",
        "--fault-huge-headers", "0.01", "--huge-header-bytes", "2097152",
        "--fault-huge-body", "0.01", "--huge-body-bytes", "0", "--fault-endless-sse-line", "0.01",
        "--fault-silent-stream", "0.01", "--fault-interim-1xx", "0.01", "--fault-trickle", "0.01",
        "--trickle-interval", "3", "--fail-first", "8",
    )  # fmt: skip
    config = config_from_args(args)
    assert (config.fault_quota, config.forbidden, config.unauthorized) == (0.1, 0.01, True)
    assert (config.fault_not_found, config.fault_redirect) == (0.2, 0.1)
    assert (config.redirect_status, config.redirect_location) == (301, "https://x/")
    assert (config.fault_long_retry_after, config.long_retry_after) == (0.1, 90)
    assert config.fault_no_retry == 0.1
    assert (config.fault_huge_headers, config.huge_header_bytes) == (0.01, 2 << 20)
    assert (config.fault_huge_body, config.huge_body_bytes) == (0.01, 0)
    assert config.fault_endless_sse_line == config.fault_silent_stream == 0.01
    assert config.fault_interim_1xx == config.fault_trickle == 0.01
    assert (config.trickle_interval, config.fail_first_n) == (3, 8)


def test_unauthorized_flag_absent_keeps_config_json() -> None:
    args = _parse("--config-json", json.dumps({"unauthorized": True}))
    assert config_from_args(args).unauthorized is True


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
