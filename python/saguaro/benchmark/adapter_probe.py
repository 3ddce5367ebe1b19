"""Timing and calibration calls on one model adapter: what the planner measures.

The planner runs one probe per model in its own pinned process (planner.measure); ``mode="auto"``
runs two in the engine's process on the models it has loaded (saguaro.auto_mode). Either way the
figures are the adapter's own forwards: a target verification of n tokens, a draft tree step of M
branches, a greedy or sampled continuation and a teacher-forced scoring pass.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Optional, Sequence

import torch

#: sequence ids the probe uses in the adapter (far from the runtime's, which count up from 1)
_CONTEXT_SEQ = 1 << 40
_TEXT_SEQ = _CONTEXT_SEQ + 1
_SCORE_SEQ = _CONTEXT_SEQ + 2


def _release(adapter: Any, seq: int) -> None:
    try:
        adapter.release(seq)
    except (KeyError, ValueError, IndexError):  # not allocated
        pass


class AdapterProbe:
    """Times forwards of one adapter over a fixed context, and continues or scores text with it."""

    def __init__(self, adapter: Any) -> None:
        self.adapter = adapter
        self.context_len = 0

    def set_context(self, ids: Sequence[int]) -> int:
        """Prefill the timing context (replacing any earlier one); returns its length."""
        _release(self.adapter, _CONTEXT_SEQ)
        self.adapter.prefill([_CONTEXT_SEQ], [list(ids)])
        self.context_len = int(self.adapter.length(_CONTEXT_SEQ))
        return self.context_len

    def close(self) -> None:
        """Free the probe's sequences."""
        for seq in (_CONTEXT_SEQ, _TEXT_SEQ, _SCORE_SEQ):
            _release(self.adapter, seq)

    def extend(self, n: int) -> float:
        """Seconds of one forward of n tokens after the context (a verification of n = K+1 tokens)."""
        t0 = time.perf_counter()
        self.adapter.extend([_CONTEXT_SEQ], [[11] * n])
        t = time.perf_counter() - t0
        self.adapter.truncate(_CONTEXT_SEQ, self.context_len)
        return t

    def tree(self, m: int, depth: int = 4) -> list[float]:
        """Seconds of each of ``depth`` tree steps of m branches over the context."""
        out = []
        for d in range(depth):
            t0 = time.perf_counter()
            self.adapter.tree_step([_CONTEXT_SEQ] * m, [self.context_len] * m, [13 + i for i in range(m)], d)
            out.append(time.perf_counter() - t0)
        return out

    def time(self, what: str, arg: int, reps: int) -> list[float]:
        """``reps`` timings of "extend" (n tokens) or "tree" (m branches, every depth), after a warm-up."""
        if what == "extend":
            self.extend(arg)
            return [self.extend(arg) for _ in range(reps)]
        if what == "tree":
            self.tree(arg, 1)
            return [t for _ in range(reps) for t in self.tree(arg)]
        raise ValueError(f"what must be 'extend' or 'tree', got {what!r}")

    def loop(self, what: str, arg: int, busy: Any) -> int:
        """Repeat a forward while ``busy`` (an Event) is set: the other core's load during a contended
        measurement. "tree": a trunk forward and the tree steps of an SSD round. Returns the count."""
        count = 0
        while busy.is_set():
            if what == "extend":
                self.extend(arg)
            else:
                self.adapter.extend([_CONTEXT_SEQ], [[11] * 5])
                self.adapter.truncate(_CONTEXT_SEQ, self.context_len)
                self.tree(arg)
            count += 1
        return count

    @staticmethod
    def _probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
        return torch.softmax(logits.double() / temperature, dim=-1)

    def continue_text(self, prompt: Sequence[int], n: int, temperature: float = 0.0,
                      seed: int = 0) -> tuple[list[int], Optional[torch.Tensor]]:
        """n tokens after the prompt: greedy at temperature 0, else sampled (seeded); with the sampling
        distribution of each (None when greedy)."""
        gen = torch.Generator().manual_seed(int(seed))
        logits = self.adapter.prefill([_TEXT_SEQ], [list(prompt)])
        toks, rows = [], []
        try:
            for _ in range(n):
                if temperature > 0:
                    probs = self._probs(logits[-1], temperature)
                    rows.append(probs.float())
                    t = int(torch.multinomial(probs, 1, generator=gen).item())
                else:
                    t = int(torch.argmax(logits[-1]).item())
                toks.append(t)
                logits = self.adapter.extend([_TEXT_SEQ], [[t]])
        finally:
            _release(self.adapter, _TEXT_SEQ)
        return toks, (torch.stack(rows) if rows else None)

    def score_text(self, prompt: Sequence[int], cont: Sequence[int],
                   temperature: float = 0.0) -> tuple[list[int], Optional[torch.Tensor]]:
        """One teacher-forced pass over prompt + cont: the rank of each cont token (ties: lower id first,
        as the fan-out kernel does) and, at temperature > 0, the distribution at each position."""
        try:
            first = self.adapter.prefill([_SCORE_SEQ], [list(prompt)])
            rest = self.adapter.extend([_SCORE_SEQ], [list(cont[:-1])]) if len(cont) > 1 else first[:0]
        finally:
            _release(self.adapter, _SCORE_SEQ)
        rows = torch.cat([first[-1:], rest], 0)
        ranks = []
        for i, tok in enumerate(cont):
            row = rows[i]
            v = row[tok]
            ranks.append(int((row > v).sum().item()) + int((row[:tok] == v).sum().item()))
        return ranks, (self._probs(rows, temperature).float() if temperature > 0 else None)


def pin_this_thread(cores: Sequence[int], threads: int) -> None:
    """Pin the calling thread to ``cores`` and set torch's intra-op threads (process-wide)."""
    import os

    os.sched_setaffinity(threading.get_native_id(), set(cores))
    torch.set_num_threads(threads)
