"""AsyncEngine: the engine for asyncio code (servers), one coroutine per request and no thread each.

The runtime's target worker notifies the book's UpdateSignal once per round with the ids that have
news; the engine hands those ids to the event loop (``loop.call_soon_threadsafe``) and sets the
asyncio events their coroutines await, which then take the tokens with a poll that never waits.
Many concurrent requests join the runtime's batch between rounds. Cancelling the awaiting task (or
closing a stream early) cancels the request in the runtime.
"""
from __future__ import annotations

import asyncio
import threading
from typing import Any, Optional, Sequence, Union

from saguaro.engine import Engine
from saguaro.request_book import RequestBook, TrackedRequest
from saguaro.results import RequestOutput, StreamDelta
from saguaro.sampling_params import SamplingParams


def _set_all(events: list[asyncio.Event]) -> None:
    for e in events:
        e.set()


class _Wakers:
    """Which asyncio event (on which loop) waits on which runtime request; filled by coroutines,
    read by the runtime's thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Event]] = {}

    def add(self, rid: int, loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
        with self._lock:
            self._by_id[rid] = (loop, event)

    def remove(self, rid: int) -> None:
        with self._lock:
            self._by_id.pop(rid, None)

    def wake(self, request_ids: Sequence[int]) -> None:
        """The runtime's notification: one call_soon_threadsafe per event loop for all its ids."""
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Event]] = {}
        with self._lock:
            for rid in request_ids:
                found = self._by_id.get(rid)
                if found is not None:
                    by_loop.setdefault(found[0], []).append(found[1])
        for loop, events in by_loop.items():
            try:
                loop.call_soon_threadsafe(_set_all, events)
            except RuntimeError:
                pass  # the loop closed; its coroutines are gone

    def wake_all(self) -> None:
        with self._lock:
            ids = list(self._by_id)
        self.wake(ids)


class AsyncStream:
    """``async for delta in stream``: one request's StreamDelta items as rounds commit.

    ``output`` holds the RequestOutput after the last delta. Cancelling the task that awaits the next
    delta, ``await stream.aclose()`` or leaving ``async with`` early cancels the request.
    """

    def __init__(self, book: RequestBook, wakers: _Wakers, request: TrackedRequest) -> None:
        self._book = book
        self._wakers = wakers
        self._req = request
        self._event: Optional[asyncio.Event] = None
        self.output: Optional[RequestOutput] = None

    @property
    def request_id(self) -> int:
        """The engine's index of this request."""
        return self._req.index

    def __aiter__(self) -> "AsyncStream":
        return self

    async def __anext__(self) -> StreamDelta:
        if self._req.finished:
            raise StopAsyncIteration
        try:
            return await self._next()
        except BaseException:
            # cancelled task, runtime error, closed engine: the runtime must not keep generating for nobody
            self._abandon()
            raise

    async def _next(self) -> StreamDelta:
        if self._event is None:
            self._event = asyncio.Event()
            self._wakers.add(self._req.runtime_id, asyncio.get_running_loop(), self._event)
        while True:
            self._book.check_open()
            # clear before polling: a notification for tokens this poll misses arrives after it
            self._event.clear()
            d = self._book.poll_now(self._req)
            if d.finished:
                self._wakers.remove(self._req.runtime_id)
                self.output = self._req.output(d.metrics)
                return d
            if d.text or d.token_ids:
                return d
            await self._event.wait()

    def _abandon(self) -> None:
        self._wakers.remove(self._req.runtime_id)
        if not self._req.finished:
            self._book.abandon([self._req])

    async def aclose(self) -> None:
        """Cancel the request if it has not finished (its final update is collected when the runtime
        reports it, without waiting here)."""
        self._abandon()

    async def __aenter__(self) -> "AsyncStream":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._abandon()

    def __del__(self) -> None:
        try:
            self._abandon()
        except Exception:
            pass


class AsyncEngine:
    """``saguaro.Engine`` for asyncio: the same constructor (models, mode, speculation settings).

    ``await engine.generate(prompts, sampling)`` returns the RequestOutputs; ``engine.stream(prompt,
    sampling)`` submits at once and returns an ``AsyncStream`` to ``async for`` over. Coroutines from
    several tasks (and event loops) may run at once; the runtime batches their requests.
    Bad input raises ValueError when submitting, before anything runs.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._engine = Engine(*args, **kwargs)
        self._book: RequestBook = self._engine._book
        self._book.owner = type(self).__name__
        self._wakers = _Wakers()
        self._book.signal.subscribe(self._wakers.wake)
        self.config = self._engine.config
        self.mode = self._engine.mode
        self.seed = self._engine.seed
        self.target = self._engine.target
        self.draft = self._engine.draft
        self.tokenizer = self._engine.tokenizer
        self.max_context = self._engine.max_context

    # -- lifecycle ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Cancel what runs, stop the runtime's workers, wake every waiting coroutine (they raise
        RuntimeError: closed). Closing twice is fine."""
        self._engine.close()
        self._wakers.wake_all()

    @property
    def closed(self) -> bool:
        """Whether close() was called."""
        return self._engine.closed

    async def __aenter__(self) -> "AsyncEngine":
        self._book.check_open()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()

    # -- requests ----------------------------------------------------------------------------------
    def encode(self, prompt: Any, sampling: SamplingParams, *, chat: bool = False) -> Any:
        """The checked token ids of one prompt (a saguaro.prompts.Prompt), e.g. to size max_new_tokens
        with ``room``; pass it to ``stream``/``generate`` as its ``token_ids`` list."""
        return self._book.encode(prompt, sampling, chat=chat)

    def room(self, prompt: Any) -> int:
        """How many new tokens fit the context after this encoded prompt."""
        return self._book.room(prompt)

    def stream(self, prompt: Any, sampling: Optional[SamplingParams] = None, *, chat: bool = False) -> AsyncStream:
        """Submit one prompt now; ``async for`` over the returned stream's StreamDelta items.

        Text that may begin a stop string is held back until known not to; on a stop string the
        request is cancelled and the text cut before it.
        """
        self._book.check_open()
        prompt_ids, sp = self._engine._prepare_one(prompt, sampling, chat)
        return AsyncStream(self._book, self._wakers, self._book.submit(prompt_ids, sp))

    async def generate(self, prompts: Any, sampling: Union[SamplingParams, Sequence[SamplingParams], None] = None,
                       *, chat: bool = False) -> list[RequestOutput]:
        """Generate for one prompt or many (like ``Engine.generate``); one RequestOutput per prompt.

        Cancelling the awaiting task cancels every request of the call.
        """
        self._book.check_open()
        prepared = self._book.prepare(prompts, sampling, chat)
        streams = [AsyncStream(self._book, self._wakers, self._book.submit(p, sp)) for p, sp in prepared]

        async def run(s: AsyncStream) -> RequestOutput:
            async for _ in s:
                pass
            assert s.output is not None
            return s.output

        tasks = [asyncio.ensure_future(run(s)) for s in streams]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for t in tasks:
                t.cancel()
            for s in streams:
                s._abandon()
            raise

    def metrics(self) -> dict[str, Any]:
        """The engine's figures, as ``Engine.metrics``."""
        return self._engine.metrics()

    def runtime_metrics(self) -> dict[str, Any]:
        """The runtime's raw aggregate counters (cheap: no derived figures)."""
        self._book.check_open()
        return dict(self._engine._runtime.metrics())
