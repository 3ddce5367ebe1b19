"""The Python face of the C++ runtime (contracts §4): submit requests, poll their tokens.

The runtime runs a target worker thread and, for ``sd``/``ssd``, a draft worker thread; both call
the model adapters (``saguaro.models``) with the GIL taken only around the Python call. Polling
releases the GIL while it waits.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Optional

from saguaro.config import RequestParams, SpeculationConfig

__all__ = ["Runtime", "RequestUpdate"]


@dataclass
class RequestUpdate:
    """What happened to a request since its last poll."""

    #: tokens committed since the last poll (a stop token that ended the request is included)
    new_tokens: list[int]
    finished: bool = False
    #: "stop" | "length" | "cancelled" | "error" once finished, else None
    finish_reason: Optional[str] = None
    #: why the request failed (finish_reason "error")
    error: Optional[str] = None
    #: notes from the runtime, e.g. that the draft failed and the request continues autoregressively
    messages: list[str] = field(default_factory=list)
    #: the request's counters and timings once finished (empty before)
    metrics: dict = field(default_factory=dict)

    @property
    def tokens(self) -> list[int]:
        """Alias of new_tokens."""
        return self.new_tokens


def _adapter(model: Any) -> Any:
    """Accept an adapter or anything that carries one (e.g. saguaro.models.LoadedModel)."""
    return getattr(model, "adapter", model) if model is not None else None


def _thread_init(threads: int) -> Callable[[], None]:
    def init() -> None:
        import torch

        torch.set_num_threads(threads)

    return init


class Runtime:
    """Serve requests with a target model and (for sd/ssd) a draft model.

    ``target``/``draft``: model adapters (contracts §3); ``draft`` may be None for mode "ar".
    ``config``: how to speculate; ``target_threads``/``draft_threads`` set each worker's torch
    intra-op threads, ``target_cores``/``draft_cores`` pin the workers.
    """

    def __init__(self, target: Any, draft: Any, config: Optional[SpeculationConfig] = None, *,
                 _test_plant_unadjusted_q: bool = False) -> None:
        # _test_plant_unadjusted_q: tests only — hand the verifier q instead of q~ (a planted bias).
        from saguaro import _core

        self._closed = True
        config = config or SpeculationConfig()
        if config.mode != "ar" and draft is None:
            raise ValueError(f'mode "{config.mode}" needs a draft model (or use mode="ar")')
        if draft is not None and _adapter(draft) is _adapter(target) and config.mode != "ar":
            raise ValueError("target and draft must be two adapter objects (each holds its own sequences and "
                             "runs on its own worker); for a self-draft, wrap the same model in a second adapter")
        if config.target_threads < 1 or config.draft_threads < 1:
            raise ValueError("target_threads and draft_threads must be >= 1")
        fanout_kind = config.fanout_kind
        self.config = config
        self._rt = _core.Runtime(
            _adapter(target),
            _adapter(draft) if config.mode != "ar" else None,
            mode=config.mode,
            k=int(config.k),
            fanout_kind=fanout_kind,
            fanout_budget=int(config.fanout_budget),
            fanout=[int(f) for f in config.fanout] if config.fanout is not None else None,
            fanout_after_miss=[int(f) for f in config.fanout_after_miss] if config.fanout_after_miss is not None else None,
            fanout_r=float(config.fanout_r),
            saguaro_c=float(config.saguaro_c),
            backup=config.backup,
            backup_critical_batch=config.backup_critical_batch,
            cache_policy=config.cache_policy,
            strict=bool(config.strict),
            target_cores=list(config.target_cores) if config.target_cores is not None else None,
            draft_cores=list(config.draft_cores) if config.draft_cores is not None else None,
            target_thread_init=_thread_init(int(config.target_threads)),
            draft_thread_init=_thread_init(int(config.draft_threads)),
            _test_plant_unadjusted_q=_test_plant_unadjusted_q,
        )
        self._closed = False

    def submit(self, prompt_ids: list[int], params: Optional[RequestParams] = None) -> int:
        """Queue a request (thread-safe); it joins the running batch between rounds. Returns its id."""
        p = params or RequestParams()
        return self._rt.submit(
            [int(t) for t in prompt_ids],
            temperature=float(p.temperature),
            top_k=int(p.top_k),
            top_p=float(p.top_p),
            max_new_tokens=int(p.max_new_tokens),
            stop_token_ids=[int(t) for t in p.stop_token_ids],
            seed=int(p.seed),
            stream=int(p.stream),
        )

    def poll(self, request_id: int, timeout: Optional[float] = None) -> RequestUpdate:
        """New tokens since the last poll; waits up to ``timeout`` seconds (None: until there are some).

        After the update with ``finished=True`` the id is forgotten (polling it again: ValueError).
        """
        d = self._rt.poll(int(request_id), timeout)
        return RequestUpdate(new_tokens=list(d["new_tokens"]), finished=d["finished"],
                             finish_reason=d["finish_reason"], error=d["error"], messages=list(d["messages"]),
                             metrics=dict(d["metrics"]))

    def result(self, request_id: int, timeout: Optional[float] = None) -> RequestUpdate:
        """Wait until the request finishes; its final update, holding every token and message.

        TimeoutError when it has not finished within ``timeout`` seconds (None: no limit); the
        request keeps running and the tokens polled so far are lost to the caller, so cancel it then.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        tokens: list[int] = []
        messages: list[str] = []
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            u = self.poll(request_id, left)
            tokens += u.new_tokens
            messages += u.messages
            if u.finished:
                return replace(u, new_tokens=tokens, messages=messages)
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"request {request_id} did not finish within {timeout} s "
                                   f"({len(tokens)} tokens so far)")

    def cancel(self, request_id: int) -> None:
        """Finish the request with "cancelled" between rounds (unknown ids are ignored)."""
        self._rt.cancel(int(request_id))

    def metrics(self) -> dict:
        """Aggregate counters and timings (sums over finished requests plus runtime-wide figures)."""
        return dict(self._rt.metrics())

    def close(self) -> None:
        """Finish requests in flight as "cancelled" and join the workers. Idempotent."""
        if not self._closed:
            self._closed = True
            self._rt.close()

    def __enter__(self) -> "Runtime":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
