"""OpenTelemetry metrics of a Synth, named by the GenAI semantic conventions.

One listener on the engine's :class:`~agentic_synth.monitor.Metrics` records each
finished request (a failure too: duration with ``error.type``). The conventions
are mid-migration, so two sets are supported:

- by default, semantic conventions v1.41.0 (the last GenAI release of
  open-telemetry/semantic-conventions, what ``opentelemetry-semantic-conventions``
  and most dashboards use): ``gen_ai.client.operation.duration`` (s),
  ``gen_ai.client.token.usage`` ({token}, ``gen_ai.token.type`` input|output),
  ``gen_ai.client.operation.time_to_first_chunk`` (s, streams only);
- with ``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental`` (the opt-in the
  conventions define for this move) or ``latest=True``, those of
  open-telemetry/semantic-conventions-genai v0.1.0: ``gen_ai.client.inference.duration``,
  ``gen_ai.client.inference.time_to_first_chunk``, the counters
  ``gen_ai.client.inference.usage.{input,output}_tokens`` (``gen_ai.token.modality``)
  and the histograms ``gen_ai.client.inference.operation.{input,output}_tokens``.

Attributes: ``gen_ai.operation.name`` = ``chat``, ``gen_ai.provider.name`` (``anthropic``,
``openai``, ``agentic_synth.sim``), ``gen_ai.request.model`` (the model without its
provider prefix) and, on failures, ``error.type`` = the agentic-synth exception class
(``RateLimitedError``, ``APITimeoutError``, ...). Never a prompt, an answer or a key.
The per-chunk ``time_per_output_chunk`` is not recorded: the listener sees whole
requests (the Prometheus export has the inter-token latency).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from .._exceptions import ConfigurationError, SynthError

if TYPE_CHECKING:
    from opentelemetry.metrics import Meter, MeterProvider

    from .._synth import Synth

__all__ = ["instrument_otel"]

#: The conventions' advisory bucket boundaries (seconds; tokens).
DURATION_BUCKETS: tuple[float, ...] = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
TOKEN_BUCKETS: tuple[float, ...] = tuple(4.0**i for i in range(14))  # 1, 4, ... 67108864

_OPT_IN = "gen_ai_latest_experimental"
#: Attributes of the duration and TTFT histograms, then of input and output tokens.
_Attributes = tuple[dict[str, str], dict[str, str], dict[str, str]]
_PROVIDERS = {"anthropic": "anthropic", "openai": "openai", "sim": "agentic_synth.sim"}
_OPERATION = "chat"


def _provider(name: str) -> str:
    return _PROVIDERS.get(name, name)


def _split(model: str, default: str) -> tuple[str, str]:
    """``provider:model`` -> (provider name, model); a bare name keeps ``default``."""
    provider, sep, name = model.partition(":")
    return (_provider(provider), name) if sep else (default, model)


def _latest_from_environment() -> bool:
    value = os.environ.get("OTEL_SEMCONV_STABILITY_OPT_IN", "")
    return _OPT_IN in {item.strip() for item in value.split(",")}


class _Recorder:
    """The listener: one request's figures to the instruments (event-loop thread)."""

    def __init__(
        self, meter: Meter, latest: bool, models: dict[str, tuple[str, str]], default: str
    ) -> None:
        self._latest = latest
        #: ``provider:model`` and bare model names (a provider's error may carry
        #: either) to (``gen_ai.provider.name``, ``gen_ai.request.model``).
        self._models = models
        self._default_provider = default
        self._attributes: dict[tuple[str | None, str | None], _Attributes] = {}
        prefix = "gen_ai.client.inference" if latest else "gen_ai.client.operation"
        self._duration = meter.create_histogram(
            f"{prefix}.duration",
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self._ttfc = meter.create_histogram(
            f"{prefix}.time_to_first_chunk",
            unit="s",
            description="Time to receive the first chunk of a streamed response.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        if latest:
            usage = "gen_ai.client.inference.usage"
            self._input_total = meter.create_counter(
                f"{usage}.input_tokens", unit="{token}", description="Input tokens used."
            )
            self._output_total = meter.create_counter(
                f"{usage}.output_tokens", unit="{token}", description="Output tokens used."
            )
            per_operation = "gen_ai.client.inference.operation"
            self._input = meter.create_histogram(
                f"{per_operation}.input_tokens",
                unit="{token}",
                description="Input tokens per inference operation.",
                explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
            )
            self._output = meter.create_histogram(
                f"{per_operation}.output_tokens",
                unit="{token}",
                description="Output tokens per inference operation.",
                explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
            )
        else:
            self._usage = meter.create_histogram(
                "gen_ai.client.token.usage",
                unit="{token}",
                description="Number of input and output tokens used.",
                explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
            )

    def _attrs(self, model: str | None, error_type: str | None) -> _Attributes:
        """The attribute sets of one (model, outcome), built once: the SDK hashes them
        on every record, building them anew each time would double the cost."""
        key = (model, error_type)
        found = self._attributes.get(key)
        if found is not None:
            return found
        base = {"gen_ai.operation.name": _OPERATION}
        if model is None:  # failed before any model was tried
            base["gen_ai.provider.name"] = self._default_provider
        else:
            provider, name = self._models.get(model) or _split(model, self._default_provider)
            base["gen_ai.provider.name"] = provider
            base["gen_ai.request.model"] = name
        attrs = base if error_type is None else {**base, "error.type": error_type}
        if self._latest:  # usage counters: no error.type; a failure's tokens are unknown
            counted = {**base, "gen_ai.token.modality": "text" if error_type is None else "unknown"}
            found = (attrs, counted, counted)
        else:
            found = (
                attrs,
                {**attrs, "gen_ai.token.type": "input"},
                {**attrs, "gen_ai.token.type": "output"},
            )
        self._attributes[key] = found
        return found

    def __call__(
        self,
        latency: float | None,
        error: BaseException | None,
        ttft: float | None,
        output_tokens: int,
        model: str | None,
        input_tokens: int,
    ) -> None:
        attrs, input_attrs, output_attrs = self._attrs(
            model, None if error is None else type(error).__name__
        )
        if latency is not None:
            self._duration.record(latency, attrs)
        if ttft is not None:
            self._ttfc.record(ttft, attrs)
        if self._latest:  # every operation counts, a failure as 0 tokens
            self._input_total.add(input_tokens, input_attrs)
            self._output_total.add(output_tokens, output_attrs)
            self._input.record(input_tokens, attrs)
            self._output.record(output_tokens, attrs)
        elif error is None:  # v1.41: only when the provider reported usage
            self._usage.record(input_tokens, input_attrs)
            self._usage.record(output_tokens, output_attrs)


def instrument_otel(
    synth: Synth, meter_provider: MeterProvider | None = None, *, latest: bool | None = None
) -> Callable[[], None]:
    """Record every request of ``synth`` as OpenTelemetry GenAI client metrics.

    ``meter_provider``: the SDK's provider (default: the global one). ``latest``:
    the newest GenAI conventions instead of v1.41.0 (default: whether
    ``OTEL_SEMCONV_STABILITY_OPT_IN`` lists ``gen_ai_latest_experimental``).
    Returns a function that stops the recording. Needs ``opentelemetry-api``:
    ``pip install 'agentic-synth[otel]'``.
    """
    try:
        from opentelemetry import metrics as otel_metrics
    except ImportError:
        raise ConfigurationError(
            "OpenTelemetry export needs opentelemetry-api: pip install 'agentic-synth[otel]'"
        ) from None
    from .. import __version__

    listeners = synth._metrics.listeners
    if any(isinstance(listener, _Recorder) for listener in listeners):
        raise SynthError(
            "this Synth already records OpenTelemetry metrics; call the function "
            "instrument_otel returned to stop that first"
        )
    meter = otel_metrics.get_meter("agentic_synth", __version__, meter_provider=meter_provider)
    models: dict[str, tuple[str, str]] = {}
    for spec in reversed(synth._specs):  # the first listed wins a shared bare name
        models[spec.name] = models[spec.model] = (_provider(spec.provider), spec.model)
    recorder = _Recorder(
        meter,
        _latest_from_environment() if latest is None else latest,
        models,
        _provider(synth._specs[0].provider),
    )
    listeners.append(recorder)

    def uninstrument() -> None:
        if recorder in listeners:
            listeners.remove(recorder)

    return uninstrument
