"""Simulated models: the in-process ``sim`` provider's engine and a loopback mock server.

One :class:`SimConfig` (latency, streaming speed, output length, fault rates,
seed) drives both, and outcomes are deterministic per seed and request content.
"""

from ._arrivals import ArrivalSampler
from ._config import FAULT_KINDS, HOSTILE_FAULTS, WIRE_ONLY_FAULTS, SimConfig
from ._engine import Outcome, Simulator, estimate_tokens
from ._latency import Latency, fixed, lognormal, parse_latency, uniform
from ._schema_json import generate_json
from ._serve import (
    add_mock_server_arguments,
    api_key_from_args,
    config_from_args,
    serve,
    spawn_mock_server,
)
from ._server import STATS_PATH, MockServer, ServerStats

__all__ = [
    "FAULT_KINDS",
    "HOSTILE_FAULTS",
    "STATS_PATH",
    "WIRE_ONLY_FAULTS",
    "ArrivalSampler",
    "Latency",
    "MockServer",
    "Outcome",
    "ServerStats",
    "SimConfig",
    "Simulator",
    "add_mock_server_arguments",
    "api_key_from_args",
    "config_from_args",
    "estimate_tokens",
    "fixed",
    "generate_json",
    "lognormal",
    "parse_latency",
    "serve",
    "spawn_mock_server",
    "uniform",
]
