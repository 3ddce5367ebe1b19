"""The engines' book of requests: encode and check prompts, submit, turn the runtime's updates into
text deltas (stop strings, detokenisation), finish, and give up on requests whose caller left.

Engine, Stream and AsyncEngine all go through one RequestBook; it knows the runtime, never the
engines, so there is no import loop between them. Waiting differs by caller and lives with them:
blocking calls wait in the runtime's poll or on the UpdateSignal, coroutines on an asyncio event.
"""
from __future__ import annotations

import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from saguaro.prompts import Prompt, encode_prompt, split_prompts
from saguaro.results import RequestOutput, StreamDelta, derive_metrics
from saguaro.sampling_params import SamplingParams
from saguaro.output_text import OutputText
from saguaro.update_signal import UpdateSignal


def _no_text(ids: Sequence[int]) -> str:
    # a model loaded without a tokenizer (a callable, a bare module) produces token ids only
    return ""


@dataclass
class TrackedRequest:
    """One submitted request: its prompt, output text so far, timings and how it ended."""

    runtime_id: int
    index: int
    prompt: Prompt
    out: OutputText
    started: float
    first_token: Optional[float] = None
    finished: bool = False
    finish_reason: Optional[str] = None
    runtime_metrics: dict = field(default_factory=dict)
    #: set when a stop string matched: the last delta, held until the runtime confirms the cancellation
    stop_delta: Optional[StreamDelta] = None

    def metrics(self) -> dict[str, Any]:
        """The runtime's per-request figures plus the engine's timings."""
        end = time.perf_counter()
        m = dict(self.runtime_metrics)
        n = len(self.out.token_ids)
        m.setdefault("prompt_tokens", len(self.prompt.token_ids))
        m["generated_tokens"] = n
        m.setdefault("elapsed_s", end - self.started)
        if self.first_token is not None:
            m.setdefault("time_to_first_token_s", self.first_token - self.started)
            decode_s = end - self.first_token
            if n > 1 and decode_s > 0:
                m.setdefault("decode_tokens_per_s", (n - 1) / decode_s)
        if m["elapsed_s"] > 0:
            m.setdefault("tokens_per_s", n / m["elapsed_s"])
        return derive_metrics(m)

    def output(self, metrics: dict[str, Any]) -> RequestOutput:
        """The finished request as the API hands it back."""
        return RequestOutput(request_id=self.index, prompt=self.prompt.original,
                             prompt_token_ids=list(self.prompt.token_ids), text=self.out.text,
                             token_ids=list(self.out.token_ids), finish_reason=self.finish_reason or "stop",
                             metrics=metrics)


class RequestBook:
    """Requests of one runtime, from prompt to finished output.

    ``runtime``: a ``saguaro.runtime.Runtime`` (or a test double with submit/poll/cancel); the book
    registers an UpdateSignal as its update callback. ``slots``: positions a request needs beyond its
    tokens (the pending token and the k draft slots). ``owner``: the engine's class name, for errors.
    """

    def __init__(self, runtime: Any, *, tokenizer: Any, vocab_size: int, max_context: int,
                 eos_token_ids: Sequence[int], slots: int, seed: int, owner: str = "Engine") -> None:
        self.runtime = runtime
        self.tokenizer = tokenizer
        self.vocab_size = int(vocab_size)
        self.max_context = int(max_context)
        self.eos_token_ids = [int(t) for t in eos_token_ids]
        self.slots = int(slots)
        self.seed = seed
        self.owner = owner
        self.signal = UpdateSignal()
        self.closed = False
        self._lock = threading.Lock()
        self._next_index = 0
        self._requests_done = 0
        self._tokens_done = 0
        self._orphans: set[int] = set()
        self.signal.subscribe(self._reap)
        runtime.set_update_callback(self.signal)

    # -- lifecycle ---------------------------------------------------------------------------------
    def check_open(self) -> None:
        """RuntimeError once the engine was closed."""
        if self.closed:
            raise RuntimeError(f"this {self.owner} is closed: create a new saguaro.{self.owner} to generate again")

    def close(self) -> None:
        """Mark the book closed and wake blocking waiters (the engine closes the runtime)."""
        self.closed = True
        self.signal.close()

    def counts(self) -> dict[str, int]:
        """Requests submitted and finished, tokens generated (by this book's callers)."""
        with self._lock:
            return {"requests_finished": self._requests_done, "tokens_generated": self._tokens_done,
                    "requests_submitted": self._next_index}

    # -- prompts -----------------------------------------------------------------------------------
    def encode(self, prompt: Any, sampling: SamplingParams, *, chat: bool, index: int = 0) -> Prompt:
        """Token ids of one prompt, checked against the vocabulary (not yet against the context)."""
        if self.tokenizer is None and sampling.stop:
            raise ValueError("stop strings need a tokenizer and this target has none: use stop_token_ids")
        return encode_prompt(prompt, self.tokenizer, self.vocab_size, chat=chat, index=index)

    def room(self, prompt: Prompt) -> int:
        """The most new tokens that fit the context after this prompt (0 or less: none)."""
        return self.max_context - len(prompt.token_ids) - self.slots

    def check_fits(self, prompt: Prompt, sampling: SamplingParams, index: int = 0) -> None:
        """ValueError naming both lengths when the prompt, or prompt plus max_new_tokens, overflows."""
        n = len(prompt.token_ids)
        if n + self.slots > self.max_context:
            raise ValueError(f"prompt {index} has {n} tokens but the model's context holds {self.max_context} "
                             f"(with {self.slots} speculation slots): shorten the prompt")
        if n + sampling.max_new_tokens + self.slots > self.max_context:
            raise ValueError(f"prompt {index} has {n} tokens and max_new_tokens is {sampling.max_new_tokens}, more "
                             f"than the model's context of {self.max_context} tokens (with {self.slots} speculation "
                             f"slots): lower max_new_tokens to at most {self.max_context - n - self.slots}")

    def prepare(self, prompts: Any, sampling: Any, chat: bool) -> list[tuple[Prompt, SamplingParams]]:
        """Split, encode and check ``generate``'s prompts and pair each with its SamplingParams."""
        items = split_prompts(prompts)
        if sampling is None:
            sampling = SamplingParams()
        if isinstance(sampling, SamplingParams):
            params = [sampling] * len(items)
        elif isinstance(sampling, Sequence) and all(isinstance(s, SamplingParams) for s in sampling):
            params = list(sampling)
            if len(params) != len(items):
                raise ValueError(f"got {len(params)} SamplingParams for {len(items)} prompts: pass one for all "
                                 f"prompts or one per prompt")
        else:
            raise ValueError(f"sampling must be a SamplingParams or a list of them, got {type(sampling).__name__}")
        out = []
        for i, (p, sp) in enumerate(zip(items, params)):
            prompt = self.encode(p, sp, chat=chat, index=i)
            self.check_fits(prompt, sp, i)
            out.append((prompt, sp))
        return out

    # -- running -----------------------------------------------------------------------------------
    def submit(self, prompt: Prompt, sampling: SamplingParams) -> TrackedRequest:
        """Hand one checked prompt to the runtime; it joins the running batch between rounds."""
        with self._lock:
            self.check_open()
            index = self._next_index
            self._next_index += 1
        rp = sampling.request_params(eos_token_ids=self.eos_token_ids, engine_seed=self.seed, request_index=index)
        decode = self.tokenizer.decode if self.tokenizer is not None else _no_text
        out = OutputText(decode=decode, stops=list(sampling.stop), hidden_ids=frozenset(rp.stop_token_ids))
        started = time.perf_counter()
        rid = self.runtime.submit(list(prompt.token_ids), rp)
        return TrackedRequest(runtime_id=rid, index=index, prompt=prompt, out=out, started=started)

    def absorb(self, req: TrackedRequest, update: Any) -> StreamDelta:
        """Apply one runtime update: new text (stop strings applied), or the final delta.

        On a stop string the request is cancelled in the runtime and its last delta is held until the
        runtime's final update (with the request's figures) arrives. Raises RuntimeError when the
        runtime failed the request.
        """
        for note in getattr(update, "messages", None) or ():
            warnings.warn(f"saguaro request {req.index}: {note}", RuntimeWarning, stacklevel=4)
        tokens = [int(t) for t in update.new_tokens]
        finished = bool(getattr(update, "finished", False))
        if tokens and req.first_token is None:
            req.first_token = time.perf_counter()
        delta = StreamDelta("", [])
        if req.stop_delta is None:
            added = req.out.add(tokens)
            delta = StreamDelta(added.text, list(added.token_ids))
            if added.stopped:
                req.stop_delta = delta
                if not finished:
                    self.runtime.cancel(req.runtime_id)
                    return StreamDelta("", [])
        if req.stop_delta is not None:
            if not finished:
                return StreamDelta("", [])  # the rest of the round after the stop string is dropped
            return self._finish(req, req.stop_delta, "stop", update)
        if finished:
            reason = getattr(update, "finish_reason", None) or "stop"
            if reason == "error":
                req.finished = True
                raise RuntimeError(f"request {req.index} failed in the runtime: {getattr(update, 'error', '')}")
            tail = req.out.finish()
            return self._finish(req, StreamDelta(delta.text + tail.text, delta.token_ids), reason, update)
        return delta

    def _finish(self, req: TrackedRequest, delta: StreamDelta, reason: str, update: Any) -> StreamDelta:
        req.finished = True
        req.finish_reason = reason
        req.runtime_metrics = dict(getattr(update, "metrics", None) or {})
        with self._lock:
            self._requests_done += 1
            self._tokens_done += len(req.out.token_ids)
        return StreamDelta(delta.text, list(delta.token_ids), True, reason, req.metrics())

    def poll_now(self, req: TrackedRequest) -> StreamDelta:
        """What the runtime has for req right now (never waits)."""
        return self.absorb(req, self.runtime.poll(req.runtime_id, 0.0))

    def next_delta(self, req: TrackedRequest) -> StreamDelta:
        """Block until req shows new text or tokens, or finishes (the runtime's poll waits, GIL released)."""
        while True:
            self.check_open()
            d = self.absorb(req, self.runtime.poll(req.runtime_id, None))
            if d.finished or d.text or d.token_ids:
                return d

    def run_to_end(self, reqs: Sequence[TrackedRequest],
                   on_finished: Optional[Callable[[TrackedRequest, StreamDelta], None]] = None) -> None:
        """Block until every request finished. With several open, each pass polls all without waiting
        and then sleeps until the runtime's next notification (no time slices); with one left, the
        runtime's poll waits for it."""
        pending = [r for r in reqs if not r.finished]
        while pending:
            generation = self.signal.generation  # before polling: news after this wakes the wait below
            alone = len(pending) == 1
            still = []
            for req in pending:
                d = self.absorb(req, self.runtime.poll(req.runtime_id, None if alone else 0.0))
                if d.finished:
                    if on_finished is not None:
                        on_finished(req, d)
                else:
                    still.append(req)
            pending = still
            if pending and not alone:
                self.signal.wait_past(generation)

    # -- giving up ---------------------------------------------------------------------------------
    def abandon(self, reqs: Sequence[TrackedRequest], wait_s: float = 0.0) -> None:
        """Cancel requests whose caller gave up. Their final updates are collected here for up to
        ``wait_s`` seconds (blocking callers), else when the runtime reports them finished, so the
        runtime can forget them either way."""
        if self.closed:
            return
        for r in reqs:
            r.finished = True
            with self._lock:
                self._orphans.add(r.runtime_id)
            try:
                self.runtime.cancel(r.runtime_id)
            except Exception:
                pass
        deadline = time.monotonic() + wait_s
        for r in reqs:
            self._collect(r.runtime_id, deadline)

    def _collect(self, rid: int, deadline: float) -> None:
        """Poll an abandoned request until its final update or the deadline (0 s left: one look)."""
        while True:
            try:
                update = self.runtime.poll(rid, max(0.0, deadline - time.monotonic()))
                done = bool(getattr(update, "finished", False))
            except (ValueError, KeyError):
                done = True  # another collector took the final update
            except Exception:
                return
            if done:
                with self._lock:
                    self._orphans.discard(rid)
                return
            if time.monotonic() >= deadline:
                return

    def _reap(self, request_ids: Sequence[int]) -> None:
        """UpdateSignal subscriber: collect abandoned requests the runtime has news about."""
        with self._lock:
            mine = [i for i in request_ids if i in self._orphans]
        for rid in mine:
            self._collect(rid, 0.0)

    def orphans(self) -> int:
        """Abandoned requests whose final update was not collected yet."""
        with self._lock:
            return len(self._orphans)
