"""A minimal pure-torch model adapter for the runtime tests (contracts §3), by full recomputation.

The logits of the token after a context depend on its last two tokens only: an embedding of each,
concatenated, through a small MLP. The "KV cache" is the token list; tree_step recomputes from the
visible prefix plus the branch's own tokens. Everything is float32 on the CPU.
"""
from __future__ import annotations

from typing import Optional

import torch


class TinyAdapter:
    """Deterministic tiny language model implementing the adapter contract."""

    def __init__(self, vocab_size: int = 8, *, seed: int = 0, hidden: int = 16, scale: float = 2.0,
                 max_context: int = 256, eos_token_ids: Optional[list[int]] = None,
                 like: Optional["TinyAdapter"] = None, noise: float = 0.0, noise_seed: int = 1) -> None:
        self.vocab_size = vocab_size
        self.max_context = max_context
        self.eos_token_ids = list(eos_token_ids or [])
        g = torch.Generator().manual_seed(seed)
        if like is not None:  # a draft: the same weights, perturbed
            self.emb = like.emb.clone()
            self.w1, self.w2 = like.w1.clone(), like.w2.clone()
            if noise:
                gn = torch.Generator().manual_seed(noise_seed)
                self.w2 += noise * torch.randn(self.w2.shape, generator=gn)
        else:
            self.emb = torch.randn(vocab_size + 1, hidden, generator=g)  # index vocab_size = "no token"
            self.w1 = torch.randn(2 * hidden, hidden, generator=g) / (2 * hidden) ** 0.5
            self.w2 = scale * torch.randn(hidden, vocab_size, generator=g) / hidden ** 0.5
        self._kv: dict[int, list[int]] = {}
        self._scratch: list[list[int]] = []
        self.calls = 0

    # --- the model ---
    def logits_after(self, contexts: list[list[int]]) -> torch.Tensor:
        """[len(contexts), V] logits of the token after each context."""
        none = self.vocab_size
        a = torch.tensor([c[-2] if len(c) >= 2 else none for c in contexts])
        b = torch.tensor([c[-1] if len(c) >= 1 else none for c in contexts])
        h = torch.tanh(torch.cat([self.emb[a], self.emb[b]], dim=1) @ self.w1)
        return (h @ self.w2).float().contiguous()

    # --- the adapter contract ---
    def prefill(self, seq_ids: list[int], prompts: list[list[int]]) -> torch.Tensor:
        self.calls += 1
        for s, p in zip(seq_ids, prompts):
            if s in self._kv:
                raise ValueError(f"sequence {s} exists")
            if not p or len(p) > self.max_context:
                raise ValueError("prompt must have 1..max_context tokens")
            self._kv[s] = list(p)
        return self.logits_after([self._kv[s] for s in seq_ids])

    def extend(self, seq_ids: list[int], tokens: list[list[int]]) -> torch.Tensor:
        self.calls += 1
        contexts = []
        for s, ts in zip(seq_ids, tokens):
            kv = self._kv[s]
            for t in ts:
                if not 0 <= t < self.vocab_size:
                    raise ValueError(f"token {t} out of range")
                kv.append(t)
                contexts.append(list(kv))
            if len(kv) > self.max_context:
                raise ValueError("context full")
        return self.logits_after(contexts)

    def tree_step(self, seq_ids: list[int], visible: list[int], tokens: list[int], depth: int) -> torch.Tensor:
        self.calls += 1
        if depth == 0:
            self._scratch = [self._kv[s][:v] for s, v in zip(seq_ids, visible)]
        elif len(self._scratch) != len(seq_ids):
            raise ValueError("tree_step rows differ from the previous step")
        for i, t in enumerate(tokens):
            self._scratch[i] = self._scratch[i] + [t]
        return self.logits_after(self._scratch)

    def truncate(self, seq_id: int, length: int) -> None:
        del self._kv[seq_id][length:]

    def length(self, seq_id: int) -> int:
        return len(self._kv[seq_id])

    def release(self, seq_id: int) -> None:
        del self._kv[seq_id]

    def live_sequences(self) -> int:
        """Sequences currently allocated (tests check everything is released)."""
        return len(self._kv)
