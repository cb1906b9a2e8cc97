"""The batch job's own errors, in the library's one exception tree."""

from __future__ import annotations

from .. import _exceptions
from .._exceptions import APITimeoutError, ConfigurationError, ProviderError, SynthError

__all__ = [
    "BatchItemCanceledError",
    "BatchItemExpiredError",
    "BatchJobBusyError",
    "BatchRefusedError",
    "error_from_record",
]


class BatchJobBusyError(ConfigurationError):
    """Another live process is running the same batch job (same state file)."""


class BatchItemExpiredError(APITimeoutError):
    """The provider's batch window (24 h on the real APIs) ended before this item ran."""


class BatchItemCanceledError(ProviderError):
    """The batch holding this item was canceled before it ran (by you, or by the
    provider: then it is retried like an error)."""


class BatchRefusedError(ProviderError):
    """The provider refused the whole batch (``failed``): no item of it has a result."""


_OURS: dict[str, type[BaseException]] = {
    cls.__name__: cls
    for cls in (
        BatchItemCanceledError,
        BatchItemExpiredError,
        BatchRefusedError,
    )
}


def error_from_record(
    error_type: str | None, message: str | None, status: int | None, model: str | None
) -> BaseException:
    """An item's stored error as an exception again (its class when we know it by name)."""
    cls = _OURS.get(error_type or "") or getattr(_exceptions, error_type or "", None)
    text = message or "unknown error"
    if isinstance(cls, type) and issubclass(cls, ProviderError):
        return cls(text, status=status, model=model)
    if isinstance(cls, type) and issubclass(cls, SynthError):
        return cls(text)
    return ProviderError(
        f"{error_type}: {text}" if error_type else text, status=status, model=model
    )
