"""CUDA graphs of the native model's small forwards: decode (1 row), verification (K+1 rows) and tree
steps (M branches) of one sequence, replayed instead of launched op by op.

On a GPU a small forward is launch-bound: hundreds of kernels, each a few microseconds of work, each
dispatched from Python. A graph records one such forward over fixed buffers and replays it with one
launch. What makes a forward replayable is that everything that changes between calls lives in a
tensor the graph reads, never in a Python value baked in at capture:

* the input tokens, their positions (rotary rows are looked up inside the graph), the KV slots to
  write (``AttentionGroup.write_index``) and the attention mask are static buffers, refilled per call;
* attention spans a fixed number of KV slots, the call's span rounded up to a bucket of ``BUCKET``
  slots, and the mask hides the slots a row may not see (its causal limit, or a tree's prefix and
  own branch); the KV of a sequence never moves (one preallocated slot per sequence).

A graph is keyed by (the sequence's KV buffer, rows, span bucket) and captured on first use. Every
capture is checked: its first replay must reproduce the eager run it was recorded from, bit for bit,
or graphs are switched off for the adapter with one logged reason and the forward runs eagerly; so
do shapes beyond the limits below. ``capture=False`` runs the same fixed-shape forward eagerly (the
CPU tests check it against the adapter's ordinary path).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Optional

import torch

from saguaro.models.attention import AttentionGroup
from saguaro.models.kv_cache import SequenceKV

log = logging.getLogger("saguaro.models.step_graphs")

#: attention spans are rounded up to a multiple of this many KV slots (one graph per bucket)
BUCKET = 256
#: forwards of more rows than this (prefills) run eagerly
MAX_ROWS = 64
#: graphs held per adapter; beyond it new shapes run eagerly (each graph keeps its buffers)
MAX_GRAPHS = 96


@dataclass
class _Step:
    """One captured (or fixed-shape eager) forward and the buffers it reads and writes."""

    tokens: torch.Tensor       # [n] int64
    positions: torch.Tensor    # [n] int64
    write_index: torch.Tensor  # [n] int64
    mask: torch.Tensor         # [n, span] bool
    out: Optional[torch.Tensor] = None
    graph: Any = None          # torch.cuda.CUDAGraph when captured


class StepGraphs:
    """The graphs of one NativeModelAdapter (call with its lock held, from one thread at a time)."""

    def __init__(self, model: Any, rotary: Any, *, capture: bool) -> None:
        self.model = model
        self.rotary = rotary
        self.capture = capture
        self.enabled = True
        self.disabled_reason = ""
        self.replays = 0
        self.captures = 0
        self.eager_fallbacks = 0
        self._steps: dict[tuple[int, int, int], _Step] = {}
        self._pool = torch.cuda.graph_pool_handle() if capture else None
        self._warned: set[str] = set()

    def span(self, kv: SequenceKV, kv_len: int) -> int:
        """The fixed attention span for a call that needs kv_len slots: the next bucket (at most the slot)."""
        return min(kv.capacity, BUCKET * math.ceil(kv_len / BUCKET))

    def run(self, kv: SequenceKV, tokens: list[int], positions: list[int], write: list[int],
            mask: torch.Tensor) -> Optional[torch.Tensor]:
        """float32 logits [n, V] of the forward, or None when it must run eagerly (the reason logged once).

        mask: bool [n, kv_len] on the model's device; positions and write: per row, absolute."""
        n, kv_len = mask.shape
        if not self.enabled:
            return None
        if n > MAX_ROWS:
            return None
        span = self.span(kv, kv_len)
        key = (kv.buffer.data_ptr(), n, span)
        step = self._steps.get(key)
        if step is None:
            if len(self._steps) >= MAX_GRAPHS:
                self._once("limit", f"more than {MAX_GRAPHS} step shapes: new shapes run eagerly")
                self.eager_fallbacks += 1
                return None
            step = self._new_step(n, span)
        self._fill(step, tokens, positions, write, mask, kv_len)
        if step.graph is None and step.out is None:
            return self._record(key, step, kv)
        if step.graph is not None:
            step.graph.replay()
            self.replays += 1
            return step.out.clone()  # the next replay overwrites step.out; the runtime may still read these rows
        return self._forward(step, kv)  # capture=False: the same fixed-shape forward, eagerly

    # ---------------------------------------------------------------- internals
    def _new_step(self, n: int, span: int) -> _Step:
        dev = self.model.device
        return _Step(tokens=torch.zeros(n, dtype=torch.int64, device=dev),
                     positions=torch.zeros(n, dtype=torch.int64, device=dev),
                     write_index=torch.zeros(n, dtype=torch.int64, device=dev),
                     mask=torch.zeros((n, span), dtype=torch.bool, device=dev))

    def _fill(self, step: _Step, tokens: list[int], positions: list[int], write: list[int], mask: torch.Tensor,
              kv_len: int) -> None:
        step.tokens.copy_(torch.tensor(tokens, dtype=torch.int64), non_blocking=True)
        step.positions.copy_(torch.tensor(positions, dtype=torch.int64), non_blocking=True)
        step.write_index.copy_(torch.tensor(write, dtype=torch.int64), non_blocking=True)
        step.mask[:, :kv_len].copy_(mask)
        step.mask[:, kv_len:].fill_(False)

    def _forward(self, step: _Step, kv: SequenceKV) -> torch.Tensor:
        n, span = step.mask.shape
        cos, sin = self.rotary.lookup(step.positions)
        group = AttentionGroup(kv, 0, n, 0, span, step.mask, write_index=step.write_index)
        return self.model.forward(step.tokens, cos, sin, [group])

    def _record(self, key: tuple[int, int, int], step: _Step, kv: SequenceKV) -> Optional[torch.Tensor]:
        self._steps[key] = step
        if not self.capture:
            step.out = self._forward(step, kv)
            return step.out.clone()
        # Eager runs first (on a side stream, as torch's graph capture wants): they are the reference the
        # capture is checked against. Writing the same KV slots again is harmless: same values.
        try:
            side = torch.cuda.Stream(device=self.model.device)
            side.wait_stream(torch.cuda.current_stream(self.model.device))
            with torch.cuda.stream(side):
                reference = self._forward(step, kv)
                self._forward(step, kv)
            torch.cuda.current_stream(self.model.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self._pool):
                out = self._forward(step, kv)
            graph.replay()
            if not torch.equal(out, reference):
                raise RuntimeError("the captured forward's first replay differs from the eager forward")
        except Exception as e:  # capture is an optimisation: any failure leaves the eager path
            self._disable(f"CUDA graph capture failed ({type(e).__name__}: {e}); running the model eagerly")
            self._steps.pop(key, None)
            return None
        step.graph, step.out = graph, out
        self.captures += 1
        return out.clone()

    def _disable(self, reason: str) -> None:
        self.enabled = False
        self.disabled_reason = reason
        self._steps.clear()
        log.warning("saguaro: %s", reason)

    def _once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("saguaro: %s", message)

    def stats(self) -> dict[str, Any]:
        """Captures, replays, eager fallbacks, whether graphs are on (and why not)."""
        return {"enabled": self.enabled, "captures": self.captures, "replays": self.replays,
                "graphs": len(self._steps), "eager_fallbacks": self.eager_fallbacks,
                "disabled_reason": self.disabled_reason}
