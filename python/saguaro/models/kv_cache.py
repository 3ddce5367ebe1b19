"""Per-sequence KV slots, preallocated once, with a scratch region for branch (tree) tokens.

A slot holds `max_context + scratch_tokens` positions for every layer. Positions below the
sequence's length are its committed KV; the tail beyond the length is the scratch region where
`tree_step` writes branch tokens (so a new tree or any extend simply overwrites it).
"""
from __future__ import annotations

import dataclasses

import torch

from saguaro.models.config import ModelConfig


@dataclasses.dataclass
class TreeState:
    """Bookkeeping of the tree being decoded for one sequence (see NativeModelAdapter.tree_step)."""

    rows: list[int]          # indices of this sequence's rows in the tree_step call
    visible: list[int]
    start: int               # first scratch KV position (= the sequence length when the tree began)
    depth: int               # branch tokens already written per row


class SequenceKV:
    """One sequence's KV: keys[l], values[l] are [kv_heads, capacity, head_dim] views of one buffer."""

    def __init__(self, buffer: torch.Tensor) -> None:
        self.buffer = buffer  # [layers, 2, kv_heads, capacity, head_dim]
        self.keys = [buffer[i, 0] for i in range(buffer.shape[0])]
        self.values = [buffer[i, 1] for i in range(buffer.shape[0])]
        self.length = 0
        self.tree: TreeState | None = None

    @property
    def capacity(self) -> int:
        return int(self.buffer.shape[3])


def _new_slot(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device, zeroed: bool) -> torch.Tensor:
    """A slot's buffer: zeroed, or left unwritten. Unwritten is safe where every attention path reads
    only positions a forward wrote (a chain's [0, its row], a tree's prefix and its own branch slots),
    as the ordinary CPU paths do. Zeroing a whole slot up front (120 MB for the 1.5B target at 4096 +
    scratch positions) faulted in all its pages at once: the first burst of 16 requests to a fresh
    engine spent 3-4 s more on its prefill (TTFT up to 4-5 s at 16 clients in every mode). Unwritten, a
    slot's pages come in as its tokens are stored, and a short request holds the memory it used. The
    step graphs (step_graphs.py; CUDA graphs on a GPU, the same fixed shapes eagerly on the CPU) attend
    over a fixed span under a mask, which may reach past what was written: their slots are zeroed (a
    masked weight 0 times a NaN left in reused memory is NaN), and so are all slots on a GPU, where
    zeroing costs little."""
    if zeroed:
        return torch.zeros(shape, dtype=dtype, device=device)
    return torch.empty(shape, dtype=dtype, device=device)


class KVCache:
    """Slots keyed by sequence id; released slots are kept and reused (no reallocation)."""

    def __init__(self, config: ModelConfig, capacity: int, dtype: torch.dtype, device: torch.device,
                 zeroed: bool = True) -> None:
        self.config = config
        self.zeroed = zeroed  # slots zeroed when allocated, else left unwritten (_new_slot)
        self.capacity = capacity
        self.dtype = dtype
        self.device = device
        self._live: dict[int, SequenceKV] = {}
        self._free: list[SequenceKV] = []

    def allocate(self, seq_id: int) -> SequenceKV:
        """A fresh (length 0) slot for seq_id; an existing sequence with that id is replaced."""
        old = self._live.pop(seq_id, None)
        if old is not None:
            self._free.append(old)
        if self._free:
            kv = self._free.pop()
        else:
            c = self.config
            shape = (c.num_layers, 2, c.num_kv_heads, self.capacity, c.head_dim)
            kv = SequenceKV(_new_slot(shape, self.dtype, self.device, self.zeroed))
        kv.length = 0
        kv.tree = None
        self._live[seq_id] = kv
        return kv

    def get(self, seq_id: int) -> SequenceKV:
        """The live slot of seq_id; ValueError if it was never prefilled or was released."""
        kv = self._live.get(seq_id)
        if kv is None:
            raise ValueError(f"unknown sequence id {seq_id}: call prefill first (or it was released)")
        return kv

    def release(self, seq_id: int) -> None:
        """Return the slot to the pool; releasing an unknown id is a no-op."""
        kv = self._live.pop(seq_id, None)
        if kv is not None:
            kv.tree = None
            self._free.append(kv)

    def live_ids(self) -> list[int]:
        return list(self._live)
