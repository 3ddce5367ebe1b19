"""The Python face of the C++ runtime (contracts §4): submit requests, poll their tokens.

The runtime runs a target worker thread and, for ``sd``/``ssd``, a draft worker thread; both call
the model adapters (``saguaro.models``) with the GIL taken only around the Python call. Polling
releases the GIL while it waits.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Optional, Sequence

from saguaro.speculation_config import SpeculationConfig

__all__ = ["Runtime", "RequestParams", "RequestUpdate"]


@dataclass
class RequestParams:
    """One request's limits and sampling, in the runtime's plain terms (the API's SamplingParams
    resolves to this: seeds derived, EOS ids added to stop_token_ids)."""

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    max_new_tokens: int = 128
    stop_token_ids: Sequence[int] = field(default_factory=list)
    seed: int = 0
    stream: int = 0


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


def _adapter(model: Any) -> Any:
    """Accept an adapter or anything that carries one (e.g. saguaro.models.LoadedModel)."""
    return getattr(model, "adapter", model) if model is not None else None


def _thread_init(threads: int, adapter: Any = None) -> Callable[[], None]:
    """What each worker thread runs first: its threads (``saguaro.kernels.threads.use_worker_threads``),
    and for a model on a CUDA device a stream of the worker's own (torch's current stream is per
    thread), so that the draft's tree steps can overlap the target's verification on one GPU instead
    of queuing behind it."""
    device = getattr(adapter, "device", None)

    def init() -> None:
        import torch

        from saguaro.kernels.threads import use_worker_threads

        use_worker_threads(adapter, threads)
        if isinstance(device, torch.device) and device.type == "cuda":
            stream = torch.cuda.Stream(device=device)
            stream.wait_stream(torch.cuda.default_stream(device))  # the weights and KV were made there
            torch.cuda.set_stream(stream)

    return init


def _threads_setter(adapter: Any) -> Optional[Callable[[int], None]]:
    """The target worker's hook for its threads per forward (the runtime lends it the idle draft's
    threads in ssd). None on a GPU."""
    device = getattr(adapter, "device", None)
    if str(device or "cpu").startswith("cuda"):
        return None

    def set_threads(threads: int) -> None:
        from saguaro.kernels.threads import use_worker_threads

        use_worker_threads(adapter, threads)

    return set_threads


class Runtime:
    """Serve requests with a target model and (for sd/ssd) a draft model.

    ``target``/``draft``: model adapters (contracts §3); ``draft`` may be None for mode "ar", or a
    ``saguaro.distributed.RemoteDraft`` (a draft that a draft-server serves in another process).
    ``config``: how to speculate; ``target_threads``/``draft_threads`` set each worker's torch
    intra-op threads, ``target_cores``/``draft_cores`` pin the workers.
    """

    def __init__(self, target: Any, draft: Any, config: Optional[SpeculationConfig] = None, *,
                 _test_plant_unadjusted_q: bool = False) -> None:
        # _test_plant_unadjusted_q: tests only — hand the verifier q instead of q~ (a planted bias).
        from saguaro import _core

        self._closed = True
        config = config or SpeculationConfig()
        runtime_config = config.to_runtime()  # validated: ValueError names the field
        if config.mode != "ar" and draft is None:
            raise ValueError(f'mode "{config.mode}" needs a draft model (or use mode="ar")')
        if draft is not None and _adapter(draft) is _adapter(target) and config.mode != "ar":
            raise ValueError("target and draft must be two adapter objects (each holds its own sequences and "
                             "runs on its own worker); for a self-draft, wrap the same model in a second adapter")
        self.config = config
        if config.mode != "ar" and hasattr(draft, "wire"):  # a RemoteDraft: the draft is in another process
            self._rt = _core.Runtime.with_remote_draft(
                _adapter(target), draft.wire, int(draft.info.vocab_size), int(draft.info.max_context), runtime_config,
                target_thread_init=_thread_init(runtime_config.target_threads, _adapter(target)))
            self._closed = False
            return
        self._rt = _core.Runtime(
            _adapter(target),
            _adapter(draft) if config.mode != "ar" else None,
            runtime_config,
            target_thread_init=_thread_init(runtime_config.target_threads, _adapter(target)),
            draft_thread_init=_thread_init(runtime_config.draft_threads, _adapter(draft)),
            set_target_threads=_threads_setter(_adapter(target)),
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

    def set_update_callback(self, callback: Optional[Callable[[list[int]], None]]) -> None:
        """Call ``callback(request_ids)`` whenever requests have news (new tokens or finished): once
        per round for all of them, from the target worker, GIL held for the call; ``poll`` then has
        their updates. For waiters on many requests (an event loop). None removes it."""
        self._rt.set_update_callback(callback)

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
