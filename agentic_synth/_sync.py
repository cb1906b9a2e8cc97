"""Synchronous helpers for scripts and notebooks.

Each call opens a :class:`Synth`, runs, and closes it. Inside a running event
loop (Jupyter), the work runs on a fresh loop in a worker thread instead of
failing with "event loop is already running".
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.from_thread
import sniffio

from ._request import Prompt
from ._spec import ModelSpec
from ._synth import Synth
from ._types import Completion, Result

if TYPE_CHECKING:
    from .datasets._dataset import Dataset
    from .datasets._structured import SlotResult

__all__ = [
    "generate",
    "generate_batch",
    "generate_events",
    "generate_structured",
    "generate_timeseries",
    "iter_structured",
    "run",
]

T = TypeVar("T")


def run(fn: Callable[[], Awaitable[T]]) -> T:
    """Run ``fn()`` to completion from synchronous code and return its value."""

    async def main() -> T:
        return await fn()

    try:
        sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return anyio.run(main)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = anyio.run(main)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="agentic-synth-sync")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def _in_synth(
    work: Callable[[Synth], Awaitable[T]],
    models: Sequence[str | ModelSpec] | str | None,
    **options: Any,
) -> T:
    """``work(synth)`` inside a Synth opened for it (``options`` as Synth takes them)."""

    async def main() -> T:
        async with Synth(models, **options) as synth:
            return await work(synth)

    return run(main)


def generate(
    prompt: Prompt,
    *,
    models: Sequence[str | ModelSpec] | str | None = None,
    **params: Any,
) -> Completion:
    """One completion, synchronously."""

    return _in_synth(lambda synth: synth.generate(prompt, **params), models)


def generate_batch(
    inputs: Iterable[Prompt],
    *,
    models: Sequence[str | ModelSpec] | str | None = None,
    max_concurrency: int = 64,
    raise_on_error: bool = False,
    **params: Any,
) -> list[Result]:
    """A whole batch, synchronously: one Completion or Failure per input."""

    return _in_synth(
        lambda synth: synth.generate_batch(inputs, raise_on_error=raise_on_error, **params),
        models,
        max_concurrency=max_concurrency,
    )


def generate_structured(
    schema: Any,
    *,
    count: int,
    models: Sequence[str | ModelSpec] | str | None = None,
    max_concurrency: int = 64,
    cache: Any = None,
    **options: Any,
) -> Dataset:
    """:meth:`Synth.generate_structured`, synchronously (options as there)."""

    return _in_synth(
        lambda synth: synth.generate_structured(schema, count=count, **options),
        models,
        max_concurrency=max_concurrency,
        cache=cache,
    )


def iter_structured(
    schema: Any,
    *,
    count: int,
    models: Sequence[str | ModelSpec] | str | None = None,
    max_concurrency: int = 64,
    cache: Any = None,
    **options: Any,
) -> Iterator[SlotResult]:
    """:meth:`Synth.iter_structured`, synchronously: slot results in slot order as
    they are validated. The job runs on an event loop in a worker thread; leaving
    the loop early (``break``) or closing the iterator cancels its outstanding
    requests and closes the Synth."""
    with anyio.from_thread.start_blocking_portal() as portal:
        synth = Synth(models, max_concurrency=max_concurrency, cache=cache)
        with portal.wrap_async_context_manager(synth):
            stream = portal.call(lambda: synth.iter_structured(schema, count=count, **options))
            try:
                while True:
                    item = portal.call(_next_or_done, stream)
                    if item is _DONE:
                        return
                    yield item
            finally:
                portal.call(stream.aclose)


_DONE: Any = object()


async def _next_or_done(stream: Any) -> Any:
    # StopAsyncIteration must not cross the portal's future: it is turned into a value.
    try:
        return await stream.__anext__()
    except StopAsyncIteration:
        return _DONE


def generate_timeseries(
    count: int | None = None,
    *,
    models: Sequence[str | ModelSpec] | str | None = None,
    max_concurrency: int = 64,
    cache: Any = None,
    **options: Any,
) -> Dataset:
    """:meth:`Synth.generate_timeseries`, synchronously (options as there)."""

    return _in_synth(
        lambda synth: synth.generate_timeseries(count, **options),
        models,
        max_concurrency=max_concurrency,
        cache=cache,
    )


def generate_events(
    count: int = 100,
    *,
    models: Sequence[str | ModelSpec] | str | None = None,
    max_concurrency: int = 64,
    cache: Any = None,
    **options: Any,
) -> Dataset:
    """:meth:`Synth.generate_events`, synchronously (options as there)."""

    return _in_synth(
        lambda synth: synth.generate_events(count, **options),
        models,
        max_concurrency=max_concurrency,
        cache=cache,
    )
