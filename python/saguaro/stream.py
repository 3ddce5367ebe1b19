"""A stream: one request's output, delta by delta, as the runtime commits rounds."""
from __future__ import annotations

from typing import Any, Iterator, Optional

from saguaro.request_book import RequestBook, TrackedRequest
from saguaro.results import RequestOutput, StreamDelta

#: how long closing a stream early waits for the runtime to confirm the cancellation (seconds)
_DRAIN_S = 30.0


class Stream:
    """Iterator over one request's StreamDelta items; cancels the request when closed early.

    ``output`` holds the RequestOutput once the last delta was taken.
    """

    def __init__(self, book: RequestBook, request: TrackedRequest) -> None:
        self._book = book
        self._req = request
        self.output: Optional[RequestOutput] = None

    def __iter__(self) -> Iterator[StreamDelta]:
        return self

    def __next__(self) -> StreamDelta:
        if self._req.finished:
            raise StopIteration
        d = self._book.next_delta(self._req)
        if d.finished:
            self.output = self._req.output(d.metrics)
        return d

    def close(self, drain: bool = True) -> None:
        """Cancel the request if it has not finished (and wait for the runtime to confirm, so it can
        forget the request; without ``drain`` that happens when the runtime reports it)."""
        if self._req.finished:
            return
        self._book.abandon([self._req], _DRAIN_S if drain else 0.0)

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close(drain=False)
        except Exception:
            pass
