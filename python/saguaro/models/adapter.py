"""The model adapter protocol (docs/contracts.md §3): the only thing the runtime calls.

The C++ runtime calls these methods from its worker threads (one thread per adapter object at a
time; the target and the draft are separate objects and run concurrently) and reads the returned
tensors directly: every returned tensor is float32, C-contiguous and on the CPU.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class ModelAdapter(Protocol):
    """A causal LM serving many sequences, each with its own KV state.

    Attributes:
        vocab_size: width of every logits row.
        max_context: longest sequence (prompt + generated + K + 1 speculation slots); prefill and
            extend raise ValueError rather than grow a sequence past it.
        eos_token_ids: end-of-sequence ids from the model's config / GGUF metadata.
    """

    vocab_size: int
    max_context: int
    eos_token_ids: list[int]

    def prefill(self, seq_ids: list[int], prompts: list[list[int]]) -> torch.Tensor:
        """Allocate the sequences' KV, run the prompts; logits [B, V] at each prompt's last position."""
        ...

    def extend(self, seq_ids: list[int], tokens: list[list[int]]) -> torch.Tensor:
        """Append tokens (ragged, each >= 1) to each sequence's KV.

        Returns logits [sum_i len(tokens[i]), V] at every new position, ordered by sequence then position.
        """
        ...

    def tree_step(self, seq_ids: list[int], visible: list[int], tokens: list[int], depth: int) -> torch.Tensor:
        """One step of branch decoding; logits [N, V].

        Row i is a branch of sequence seq_ids[i] that sees the first visible[i] KV positions of that
        sequence, then its own `depth` earlier branch tokens (from the calls with depth 0..depth-1
        with the same rows in the same order), then tokens[i] at position visible[i] + depth.
        depth == 0 starts a new tree (discarding the old one). A branch never sees another branch.
        The sequences' KV lengths do not change.
        """
        ...

    def truncate(self, seq_id: int, length: int) -> None:
        """Drop KV positions >= length."""
        ...

    def length(self, seq_id: int) -> int:
        """KV positions held by the sequence."""
        ...

    def release(self, seq_id: int) -> None:
        """Free the sequence."""
        ...
