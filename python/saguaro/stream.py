"""A stream: one request's output, delta by delta, as the runtime commits rounds."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Iterator, Optional

from saguaro.results import RequestOutput, StreamDelta

if TYPE_CHECKING:
    from saguaro.engine import Engine, _Request

#: how long closing a stream early waits for the runtime to confirm the cancellation (seconds)
_DRAIN_S = 30.0


class Stream:
    """Iterator over one request's StreamDelta items; cancels the request when closed early."""

    def __init__(self, engine: Engine, request: _Request) -> None:
        self._engine = engine
        self._req = request
        self.output: Optional[RequestOutput] = None

    def __iter__(self) -> Iterator[StreamDelta]:
        return self

    def __next__(self) -> StreamDelta:
        if self._req.finished:
            raise StopIteration
        while True:
            self._engine._check_open()
            d = self._engine._step(self._req, None)
            if d.finished:
                self.output = self._engine._output(self._req, d.metrics)
                return d
            if d.text or d.token_ids:
                return d

    def close(self, drain: bool = True) -> None:
        """Cancel the request if it has not finished (and wait for the runtime to confirm, so it can
        forget the request)."""
        if self._req.finished:
            return
        self._req.finished = True
        engine = self._engine
        if engine._closed:
            return
        engine._runtime.cancel(self._req.runtime_id)
        deadline = time.monotonic() + _DRAIN_S
        while drain and time.monotonic() < deadline and not engine._closed:
            if getattr(engine._runtime.poll(self._req.runtime_id, _DRAIN_S), "finished", False):
                break

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close(drain=False)
        except Exception:
            pass
