"""Draft vocabulary pruning: a draft's output head that scores only a subset of the token ids.

Every other id gets the logit -inf, so the draft's distribution q is 0 there. That changes only
acceptance, never the output: verification compares the target's p with the very q the draft
sampled from, and the residual max(p - q, 0) puts the target's whole mass on ids the draft cannot
propose. The output head is the largest matrix of a small draft with a big vocabulary (Qwen2.5's
151,936 rows are ~27% of the 0.5B's weights, and the largest GEMM of its tree steps), so scoring
32,768 ids makes each draft forward markedly cheaper.

The kept ids are: the lowest ``size`` ids (byte-level BPE ids are assigned in merge order, so low
ids are the frequent tokens), the ids named in ``always`` (special tokens, EOS) and, optionally,
every token of each live sequence's prompt (identifiers a completion repeats are often rare tokens).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch

from saguaro.models.linear import Linear


def kept_ids(vocab_size: int, keep: int | Sequence[int], always: Iterable[int] = ()) -> torch.Tensor:
    """Sorted unique int64 ids: range(keep) (an int) or the listed ids, plus `always`; ValueError if bad."""
    if isinstance(keep, bool):
        raise ValueError(f"draft_vocab must be a number of ids or a list of token ids, got {keep!r}")
    if isinstance(keep, int):
        if not 1 <= keep <= vocab_size:
            raise ValueError(f"draft_vocab must be in [1, {vocab_size}] (the draft's vocabulary), got {keep}")
        ids = list(range(keep))
    else:
        try:
            ids = [int(t) for t in keep]
        except (TypeError, ValueError) as e:
            raise ValueError(f"draft_vocab must be a number of ids or a list of token ids, got {keep!r:.80}") from e
        if not ids:
            raise ValueError("draft_vocab lists no token ids: give at least one (or a count such as 32768)")
    ids += [int(t) for t in always]
    bad = [t for t in ids if not 0 <= t < vocab_size]
    if bad:
        raise ValueError(f"draft_vocab has token ids outside the vocabulary [0, {vocab_size}): {bad[:5]}")
    return torch.tensor(sorted(set(ids)), dtype=torch.int64)


class DraftVocabulary:
    """The ids a pruned draft head scores, and that head (rebuilt when live prompts add ids).

    Args:
        head: the model's full output head (its rows are copied; it stays in use for embeddings).
        device: the model's device.
        base: sorted unique ids always scored (see `kept_ids`).
        with_prompts: also score every token of each live sequence's prompt.
    """

    def __init__(self, head: Linear, base: torch.Tensor, device: torch.device, *, with_prompts: bool = True) -> None:
        if not callable(getattr(head, "select_rows", None)):
            raise ValueError(f"draft_vocab needs an output head that can select rows (saguaro's Linear or its "
                             f"int8 forms), not a {type(head).__name__}")
        self.vocab_size = int(head.out_features)
        self.device = torch.device(device)
        self.base = base
        self.with_prompts = with_prompts
        self._full = head
        self._prompt_ids: dict[int, torch.Tensor] = {}
        self._ids: torch.Tensor | None = None
        self._prefix = 0  # how many kept ids are 0, 1, 2, ... in order
        self._head: Linear | None = None

    @property
    def ids(self) -> torch.Tensor:
        """The ids scored now (sorted int64)."""
        self._build()
        assert self._ids is not None
        return self._ids

    def add_sequence(self, seq_id: int, prompt: Sequence[int]) -> None:
        """Score the prompt's tokens while `seq_id` lives (no-op unless with_prompts)."""
        if not self.with_prompts:
            return
        extra = torch.tensor(sorted(set(int(t) for t in prompt)), dtype=torch.int64)
        extra = extra[~torch.isin(extra, self.base)]
        self._prompt_ids[seq_id] = extra
        if extra.numel() and (self._ids is None or not bool(torch.isin(extra, self._ids).all())):
            self._head = None

    def drop_sequence(self, seq_id: int) -> None:
        """Stop scoring the ids only `seq_id`'s prompt added (unknown ids are ignored)."""
        extra = self._prompt_ids.pop(seq_id, None)
        if extra is not None and extra.numel():
            self._head = None

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """float32 logits [N, vocab] of normed hidden states x [N, hidden]: the pruned head's scores
        at the kept ids (bit-identical to the full head's with saguaro's bf16 kernel; the same int8
        rows for an int8 head), -inf elsewhere."""
        self._build()
        assert self._head is not None and self._ids is not None
        scores = self._head.forward_float(x)
        out = torch.full((x.shape[0], self.vocab_size), float("-inf"), dtype=torch.float32, device=scores.device)
        # the kept ids start with 0..n-1 (the lowest ids): one slice copy, then a scatter of the rest
        # (index_copy_ over all 32k columns costs ~6x as much: 2.2 against 0.4 ms at 16 rows)
        n = self._prefix
        out[:, :n] = scores[:, :n]
        if n < scores.shape[1]:
            out.index_copy_(1, self._ids[n:].to(scores.device), scores[:, n:])
        return out

    def _build(self) -> None:
        if self._head is not None:
            return
        parts = [self.base, *self._prompt_ids.values()]
        ids = torch.unique(torch.cat(parts)) if len(parts) > 1 else self.base
        self._head = self._full.select_rows(ids.to(self.device))
        self._ids = ids
        self._prefix = int((ids == torch.arange(ids.numel())).cumprod(0).sum())  # ids[:n] == 0..n-1
