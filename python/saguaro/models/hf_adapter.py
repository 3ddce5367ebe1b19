"""HFModelAdapter: the adapter protocol over any transformers causal LM (generic, slower path).

Each sequence keeps its own transformers `DynamicCache`; truncate crops it. tree_step uses cache
expansion: at depth 0 every branch gets its own copy of its sequence's cache cropped to `visible`,
then each step runs one token per branch against that copy. Branches are run one by one, so a
tree step costs N single-token forwards plus N cache copies at depth 0 (the native adapter does
the whole step in one batched forward).
"""
from __future__ import annotations

import copy
import threading
from typing import Any, Sequence

import torch

from saguaro.models._validation import check_batch, check_tree_args, context_error

DEFAULT_MAX_CONTEXT = 4096


class HFModelAdapter:
    """Adapter over a transformers PreTrainedModel (eval mode, its own device and dtype)."""

    def __init__(self, model: Any, *, max_context: int | None = None,
                 eos_token_ids: Sequence[int] | None = None) -> None:
        cfg = model.config
        self.model = model.eval()
        out = model.get_output_embeddings()
        self.vocab_size: int = int(out.weight.shape[0]) if out is not None else int(cfg.vocab_size)
        limit = int(getattr(cfg, "max_position_embeddings", DEFAULT_MAX_CONTEXT) or DEFAULT_MAX_CONTEXT)
        self.max_context: int = int(max_context if max_context is not None else min(DEFAULT_MAX_CONTEXT, limit))
        if eos_token_ids is None:
            eos: set[int] = set()
            for src in (cfg, getattr(model, "generation_config", None)):
                e = getattr(src, "eos_token_id", None) if src is not None else None
                eos.update([e] if isinstance(e, int) else (e or []))
            eos_token_ids = sorted(eos)
        self.eos_token_ids: list[int] = [int(e) for e in eos_token_ids]
        self.device = next(model.parameters()).device
        self._caches: dict[int, Any] = {}
        self._lengths: dict[int, int] = {}
        self._tree: tuple[tuple, list[Any], int] | None = None  # (rows key, per-row caches, next depth)
        self._lock = threading.Lock()

    def _new_cache(self) -> Any:
        from transformers import DynamicCache

        try:
            return DynamicCache(config=self.model.config)
        except TypeError:
            return DynamicCache()

    def _forward(self, cache: Any, tokens: Sequence[int]) -> torch.Tensor:
        ids = torch.tensor([list(tokens)], dtype=torch.long, device=self.device)
        out = self.model(input_ids=ids, past_key_values=cache, use_cache=True)
        return out.logits[0]

    def prefill(self, seq_ids: list[int], prompts: list[list[int]]) -> torch.Tensor:
        """Run each prompt in a fresh cache; logits [B, V] at the last prompt positions."""
        check_batch(seq_ids, prompts, "prompts", self.vocab_size)
        for s, p in zip(seq_ids, prompts):
            if len(p) > self.max_context:
                raise context_error(s, len(p), self.max_context)
        with self._lock, torch.inference_mode():
            rows = []
            for s, p in zip(seq_ids, prompts):
                cache = self._new_cache()
                rows.append(self._forward(cache, p)[-1:])
                self._caches[s], self._lengths[s] = cache, len(p)
            return _cpu_f32(torch.cat(rows))

    def extend(self, seq_ids: list[int], tokens: list[list[int]]) -> torch.Tensor:
        """Append tokens per sequence; logits at every new position."""
        check_batch(seq_ids, tokens, "tokens", self.vocab_size)
        with self._lock, torch.inference_mode():
            for s, t in zip(seq_ids, tokens):
                if self._get(s)[1] + len(t) > self.max_context:
                    raise context_error(s, self._lengths[s] + len(t), self.max_context)
            rows = []
            for s, t in zip(seq_ids, tokens):
                rows.append(self._forward(self._caches[s], t))
                self._lengths[s] += len(t)
            self._tree = None
            return _cpu_f32(torch.cat(rows))

    def tree_step(self, seq_ids: list[int], visible: list[int], tokens: list[int], depth: int) -> torch.Tensor:
        """Branch decoding by cache expansion (one cache copy per branch; branches run one by one)."""
        check_tree_args(seq_ids, visible, tokens, depth, self.vocab_size)
        key = (tuple(seq_ids), tuple(visible))
        with self._lock, torch.inference_mode():
            if depth == 0:
                caches = []
                for s, v in zip(seq_ids, visible):
                    cache, length = self._get(s)
                    if not 0 <= v <= length:
                        raise ValueError(f"tree_step: visible {v} for sequence {s} outside [0, its length {length}]")
                    c = copy.deepcopy(cache)
                    _crop(c, length, v)
                    caches.append(c)
                self._tree = (key, caches, 0)
            elif self._tree is None or self._tree[0] != key or self._tree[2] != depth:
                raise ValueError(f"tree_step depth {depth} must follow depths 0..{depth - 1} with the same rows "
                                 "(seq_ids, visible) in the same order, with no extend/truncate in between")
            _, caches, _ = self._tree  # type: ignore[misc]
            rows = [self._forward(c, [t])[-1:] for c, t in zip(caches, tokens)]
            self._tree = (key, caches, depth + 1)
            return _cpu_f32(torch.cat(rows))

    def truncate(self, seq_id: int, length: int) -> None:
        """Crop the sequence's cache to `length` positions."""
        with self._lock:
            cache, current = self._get(seq_id)
            if not 0 <= length <= current:
                raise ValueError(f"cannot truncate sequence {seq_id} of length {current} to {length}")
            _crop(cache, current, length)
            self._lengths[seq_id] = int(length)
            self._tree = None

    def length(self, seq_id: int) -> int:
        with self._lock:
            return self._get(seq_id)[1]

    def release(self, seq_id: int) -> None:
        with self._lock:
            self._caches.pop(seq_id, None)
            self._lengths.pop(seq_id, None)

    def _get(self, seq_id: int) -> tuple[Any, int]:
        if seq_id not in self._caches:
            raise ValueError(f"unknown sequence id {seq_id}: call prefill first (or it was released)")
        return self._caches[seq_id], self._lengths[seq_id]


def _crop(cache: Any, current: int, length: int) -> None:
    # a negative argument means "remove this many" in every transformers version that has crop()
    if length < current:
        cache.crop(length - current)


def _cpu_f32(x: torch.Tensor) -> torch.Tensor:
    return x.detach().to(device="cpu", dtype=torch.float32).contiguous()
