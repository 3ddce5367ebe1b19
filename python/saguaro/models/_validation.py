"""Argument checks shared by the adapters (ValueError with what to fix)."""
from __future__ import annotations

from typing import Sequence


def check_batch(seq_ids: Sequence[int], rows: Sequence[Sequence[int]], what: str, vocab_size: int) -> None:
    """Equal lengths, distinct ids, non-empty rows, ids inside the vocabulary."""
    if len(seq_ids) != len(rows):
        raise ValueError(f"{len(seq_ids)} seq_ids but {len(rows)} {what}")
    if len(set(seq_ids)) != len(seq_ids):
        raise ValueError(f"duplicate sequence ids in one call: {list(seq_ids)}")
    for s, r in zip(seq_ids, rows):
        if len(r) == 0:
            raise ValueError(f"sequence {s}: {what} must hold at least one token")
        check_tokens(r, vocab_size)


def check_tokens(tokens: Sequence[int], vocab_size: int) -> None:
    """Every id in [0, vocab_size)."""
    lo, hi = min(tokens), max(tokens)
    if lo < 0 or hi >= vocab_size:
        bad = lo if lo < 0 else hi
        raise ValueError(f"token id {bad} outside the vocabulary [0, {vocab_size})")


def check_tree_args(seq_ids: Sequence[int], visible: Sequence[int], tokens: Sequence[int], depth: int,
                    vocab_size: int) -> None:
    """Shapes and ranges of a tree_step call."""
    n = len(seq_ids)
    if n == 0 or len(visible) != n or len(tokens) != n:
        raise ValueError(f"tree_step needs equal, non-empty seq_ids/visible/tokens, got "
                         f"{len(seq_ids)}/{len(visible)}/{len(tokens)}")
    if depth < 0:
        raise ValueError(f"depth must be >= 0, got {depth}")
    check_tokens(tokens, vocab_size)


def context_error(seq_id: int, length: int, max_context: int) -> ValueError:
    """The error for a sequence that would outgrow max_context."""
    return ValueError(f"sequence {seq_id} would hold {length} tokens, more than max_context {max_context}: "
                      "shorten the prompt / generation or load the model with a larger max_context")
