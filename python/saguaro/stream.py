"""A stream: one request's output, delta by delta, as the runtime commits rounds."""
from __future__ import annotations

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
        self._engine._abandon([self._req], _DRAIN_S if drain else 0.0)

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close(drain=False)
        except Exception:
            pass
