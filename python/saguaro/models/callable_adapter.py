"""CallableAdapter: any fn(tokens[B, T]) -> logits[B, T, V], or a TorchScript module.

This is the slow path: there is no KV cache, so every call recomputes each sequence (or branch)
from its first token: an extend of n tokens costs a forward over the whole sequence, and a tree
step one full forward per branch.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Sequence

import torch

from saguaro.models._validation import check_batch, check_tree_args, context_error


class CallableAdapter:
    """Adapter over a logits function by full recomputation (keeps each sequence's tokens)."""

    def __init__(self, fn: Callable[[torch.Tensor], Any], *, vocab_size: int | None = None,
                 max_context: int = 4096, eos_token_ids: Sequence[int] = (),
                 device: str | torch.device = "cpu") -> None:
        if not callable(fn):
            raise TypeError(f"CallableAdapter needs a callable fn(tokens[B,T]) -> logits[B,T,V], got {type(fn)}")
        self.fn = fn
        self.device = torch.device(device)
        self.max_context = int(max_context)
        self.eos_token_ids = [int(e) for e in eos_token_ids]
        self._tokens: dict[int, list[int]] = {}
        self._tree: tuple[tuple, list[list[int]], int] | None = None
        self._lock = threading.Lock()
        if vocab_size is None:
            with torch.inference_mode():
                vocab_size = int(self._logits([0]).shape[-1])
        self.vocab_size = int(vocab_size)

    def _logits(self, tokens: Sequence[int]) -> torch.Tensor:
        ids = torch.tensor([list(tokens)], dtype=torch.long, device=self.device)
        out = self.fn(ids)
        if hasattr(out, "logits"):
            out = out.logits
        elif isinstance(out, (tuple, list)):
            out = out[0]
        if not isinstance(out, torch.Tensor) or out.dim() != 3 or out.shape[:2] != ids.shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"the model callable must return logits [B, T, V] for tokens {tuple(ids.shape)}, got {got}")
        return out[0]

    def prefill(self, seq_ids: list[int], prompts: list[list[int]]) -> torch.Tensor:
        """Run each prompt; logits [B, V] at the last positions."""
        check_batch(seq_ids, prompts, "prompts", self.vocab_size)
        for s, p in zip(seq_ids, prompts):
            if len(p) > self.max_context:
                raise context_error(s, len(p), self.max_context)
        with self._lock, torch.inference_mode():
            rows = [self._logits(p)[-1:] for p in prompts]
            for s, p in zip(seq_ids, prompts):
                self._tokens[s] = list(p)
            return _cpu_f32(torch.cat(rows))

    def extend(self, seq_ids: list[int], tokens: list[list[int]]) -> torch.Tensor:
        """Recompute each whole sequence with the new tokens; logits at the new positions."""
        check_batch(seq_ids, tokens, "tokens", self.vocab_size)
        with self._lock, torch.inference_mode():
            for s, t in zip(seq_ids, tokens):
                if len(self._get(s)) + len(t) > self.max_context:
                    raise context_error(s, len(self._tokens[s]) + len(t), self.max_context)
            rows = []
            for s, t in zip(seq_ids, tokens):
                full = self._tokens[s] + list(t)
                rows.append(self._logits(full)[-len(t):])
                self._tokens[s] = full
            self._tree = None
            return _cpu_f32(torch.cat(rows))

    def tree_step(self, seq_ids: list[int], visible: list[int], tokens: list[int], depth: int) -> torch.Tensor:
        """One full forward per branch over the visible prefix plus the branch's tokens."""
        check_tree_args(seq_ids, visible, tokens, depth, self.vocab_size)
        key = (tuple(seq_ids), tuple(visible))
        with self._lock, torch.inference_mode():
            if depth == 0:
                branches = []
                for s, v in zip(seq_ids, visible):
                    seq = self._get(s)
                    if not 0 <= v <= len(seq):
                        raise ValueError(f"tree_step: visible {v} for sequence {s} outside [0, its length {len(seq)}]")
                    branches.append(seq[:v])
                self._tree = (key, branches, 0)
            elif self._tree is None or self._tree[0] != key or self._tree[2] != depth:
                raise ValueError(f"tree_step depth {depth} must follow depths 0..{depth - 1} with the same rows "
                                 "(seq_ids, visible) in the same order, with no extend/truncate in between")
            _, branches, _ = self._tree  # type: ignore[misc]
            for b, t in zip(branches, tokens):
                b.append(int(t))
            rows = [self._logits(b)[-1:] for b in branches]
            self._tree = (key, branches, depth + 1)
            return _cpu_f32(torch.cat(rows))

    def truncate(self, seq_id: int, length: int) -> None:
        with self._lock:
            seq = self._get(seq_id)
            if not 0 <= length <= len(seq):
                raise ValueError(f"cannot truncate sequence {seq_id} of length {len(seq)} to {length}")
            del seq[length:]
            self._tree = None

    def length(self, seq_id: int) -> int:
        with self._lock:
            return len(self._get(seq_id))

    def release(self, seq_id: int) -> None:
        with self._lock:
            self._tokens.pop(seq_id, None)

    def _get(self, seq_id: int) -> list[int]:
        if seq_id not in self._tokens:
            raise ValueError(f"unknown sequence id {seq_id}: call prefill first (or it was released)")
        return self._tokens[seq_id]


def _cpu_f32(x: torch.Tensor) -> torch.Tensor:
    return x.detach().to(device="cpu", dtype=torch.float32).contiguous()
