"""Sampling a running mock server's request count, to see when calls arrived (a rate
limit held across processes, the busiest second of a job)."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from types import TracebackType

from ._server import STATS_PATH

__all__ = ["ArrivalSampler"]


class ArrivalSampler:
    """``(monotonic time, requests so far to path)`` every ``every`` seconds, on a
    thread, while the ``with`` block runs; read ``samples`` afterwards."""

    def __init__(self, url: str, path: str = "/v1/messages", every: float = 0.02) -> None:
        self.url = url
        self.path = path
        self.every = every
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with urllib.request.urlopen(f"{self.url}{STATS_PATH}", timeout=5) as response:
                stats = json.load(response)
            self.samples.append((time.monotonic(), int(stats["requests"].get(self.path, 0))))
            time.sleep(self.every)

    def __enter__(self) -> ArrivalSampler:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
