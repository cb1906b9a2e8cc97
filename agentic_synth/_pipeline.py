"""The path of one input, a stage at a time.

build the request -> prompt dedup -> cache (and single-flight) -> router ->
store -> output dedup -> the result. Each stage is a small object; a
:class:`Pipeline` strings together the ones a call asked for, and the scheduler
runs ``pipeline.process(index, item)`` for every input. A stage never reaches
back up: the router call is handed in as ``send``, shared state (metrics, the
cache) is passed to the stages that use it.

Output dedup runs after the store on purpose: the cache keeps the provider's
answer, and a rerun replays it and makes the same flag-or-drop decision, so a
dropped near-duplicate is never paid for twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ._dedup import OutputDedup, PromptDedup
from ._exceptions import InvalidRequestError
from ._log import get_logger
from ._request import GenerationParams, Prompt, build_request
from ._types import Completion, Failure, Request, Result
from .caching._cache import CacheControl, ResponseCache

__all__ = ["Pipeline", "Send"]

log = get_logger("agentic_synth")

#: The router stage as the pipeline sees it: one request to one result.
Send = Callable[[Request, int | None], Awaitable[Result]]


class _CacheStage:
    """Replay a stored answer, or compute it once and store it."""

    __slots__ = ("_cache", "_control", "_ttl")

    def __init__(self, cache: ResponseCache, control: CacheControl, ttl: float | None) -> None:
        self._cache = cache
        self._control = control
        self._ttl = ttl

    async def __call__(self, request: Request, index: int, send: Send) -> Result:
        return await self._cache.fetch(
            request,
            index,
            lambda: send(request, index),
            control=self._control,
            ttl=self._ttl,
        )


class Pipeline:
    """One call's stages, for every input of a batch."""

    def __init__(
        self,
        send: Send,
        params: GenerationParams,
        *,
        prompt_dedup: PromptDedup | None = None,
        output_dedup: OutputDedup | None = None,
        cache: ResponseCache | None = None,
        control: CacheControl = "default",
        ttl: float | None = None,
    ) -> None:
        self._params = params
        self._send = send
        self._prompt_dedup = prompt_dedup
        self._output_dedup = output_dedup
        self._cache = (
            None if cache is None or control == "off" else _CacheStage(cache, control, ttl)
        )
        if prompt_dedup is None and output_dedup is None and self._cache is None:
            self.process = self._plain  # type: ignore[method-assign]

    async def _plain(self, index: int, item: Prompt) -> Result:
        """The common case, kept short: build and send."""
        try:
            request = build_request(item, self._params)
        except Exception as exc:
            return unbuildable(exc, index)
        return await self._send(request, index)

    async def process(self, index: int, item: Prompt) -> Result:
        try:
            request = build_request(item, self._params)
        except Exception as exc:
            return unbuildable(exc, index)
        prompt_dedup = self._prompt_dedup
        claim: int | None = None
        if prompt_dedup is not None:
            position, earlier = prompt_dedup.claim(index, request.prompt_text())
            if earlier is None:
                claim = position
            else:
                reused = await prompt_dedup.result_of(earlier, index)
                if reused is not None:
                    return reused
        try:
            if self._cache is not None:
                result = await self._cache(request, index, self._send)
            else:
                result = await self._send(request, index)
            if self._output_dedup is not None and isinstance(result, Completion):
                result = self._output_dedup.check(index, result)
            if claim is not None:
                prompt_dedup.publish(claim, result)  # type: ignore[union-attr]
                claim = None
            return result
        finally:
            if claim is not None:  # cancelled, or the job stopped: give the claim back
                prompt_dedup.abandon(claim)  # type: ignore[union-attr]


def unbuildable(exc: Exception, index: int) -> Failure:
    """An input that cannot even become a request is that input's failure, whatever
    went wrong (a field of the wrong type must not stop a million-item batch)."""
    if not isinstance(exc, InvalidRequestError):
        log.error("unexpected_input_error", index=index, error=repr(exc), exc_info=exc)
        exc = InvalidRequestError(f"input {index} cannot be sent: {type(exc).__name__}: {exc}")
    return Failure(exc, index=index)
