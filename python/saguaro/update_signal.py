"""The runtime's news, fanned out to whoever waits on requests.

The C++ runtime calls ``UpdateSignal`` from its target worker once per round with the ids of the
requests that have new tokens or finished (``Runtime.set_update_callback``). A blocking waiter (the
Engine's ``generate`` over many requests) sleeps until the next notification instead of polling in
time slices; subscribers (the AsyncEngine, the reaper of abandoned requests) get the ids themselves.
"""
from __future__ import annotations

import threading
import weakref
from typing import Callable, Optional, Sequence

Listener = Callable[[Sequence[int]], None]


class UpdateSignal:
    """Called with request ids; counts notifications and wakes blocking waiters and subscribers.

    Subscribers that are bound methods are held weakly, so an engine that subscribes is not kept
    alive by the runtime that calls it.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._generation = 0
        self._closed = False
        self._subscribers: list[Callable[[], Optional[Listener]]] = []

    @property
    def generation(self) -> int:
        """How many notifications came so far: read it before polling, then ``wait_past`` it."""
        with self._cond:
            return self._generation

    def __call__(self, request_ids: Sequence[int]) -> None:
        """The runtime's notification (target worker thread, GIL held; keep it short)."""
        with self._cond:
            self._generation += 1
            self._cond.notify_all()
            subscribers = list(self._subscribers)
        for ref in subscribers:
            fn = ref()
            if fn is not None:
                fn(request_ids)

    def wait_past(self, generation: int, timeout: Optional[float] = None) -> bool:
        """Block until a notification newer than ``generation`` came (or the signal closed, or the
        timeout passed); True unless it timed out."""
        with self._cond:
            return self._cond.wait_for(lambda: self._generation != generation or self._closed, timeout)

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(request_ids)`` on every notification (from the runtime's thread)."""
        ref: Callable[[], Optional[Listener]]
        if hasattr(listener, "__self__") and hasattr(listener, "__func__"):
            ref = weakref.WeakMethod(listener)  # type: ignore[arg-type]
        else:
            ref = (lambda fn=listener: fn)
        with self._cond:
            self._subscribers.append(ref)

    def unsubscribe(self, listener: Listener) -> None:
        """Stop calling ``listener`` (unknown listeners are ignored)."""
        with self._cond:
            self._subscribers = [r for r in self._subscribers if r() is not None and r() != listener]

    def close(self) -> None:
        """Wake every blocking waiter for good (the runtime is gone)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
