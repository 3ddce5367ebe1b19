"""Batch-invariant causal attention for bf16 CPU models (``saguaro._core.causal_attention_bf16``).

Query row i of a chain attends KV slots [0, start + i] with one fixed sequence of fp32 operations per
(row, head) that depends only on its own visible length: a K+1-row verification gives each row the
bits of the one-row decode it replaces, in one call instead of one SDPA call per row.
"""
from __future__ import annotations

import math

import torch

from saguaro.kernels.small_gemm import available, core
from saguaro.kernels.threads import kernel_threads

__all__ = ["available", "branch_attention", "causal_attention", "rope_store"]

_PATHS = ("auto", "scalar", "avx2")


def _rows_of_heads(q: torch.Tensor) -> torch.Tensor:
    """q itself when each row's heads are contiguous (the q heads of a q/k/v projection's rows are: the
    kernel takes their row stride), else a contiguous copy."""
    _, h, d = q.shape
    return q if q.stride(2) == 1 and (h == 1 or q.stride(1) == d) and q.stride(0) >= h * d else q.contiguous()


def causal_attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, start: int, *,
                     threads: int | None = None, path: str = "auto") -> torch.Tensor:
    """Attention of q [n, H, D] over keys / values [Hkv, capacity, D] (bf16, CPU); row i sees slots
    [0, start + i]. Returns [n, H, D] bf16. Scale 1/sqrt(D) (SDPA's default). threads None means
    ``kernel_threads()`` (saguaro.kernels.threads); neither threads nor path changes a bit. Bad arguments raise ValueError."""
    for name, t in (("q", q), ("keys", keys), ("values", values)):
        if not isinstance(t, torch.Tensor) or t.dtype != torch.bfloat16 or t.device.type != "cpu" or t.dim() != 3:
            raise ValueError(f"{name}: expected a 3-d bfloat16 CPU tensor")
    if path not in _PATHS:
        raise ValueError(f"path: expected one of {_PATHS}, got {path!r}")
    threads = kernel_threads() if threads is None else threads
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads: expected an integer >= 1, got {threads!r}")
    out = torch.empty(q.shape, dtype=torch.bfloat16)
    core().causal_attention_bf16(_rows_of_heads(q), keys.contiguous(), values.contiguous(), int(start),
                                 1.0 / math.sqrt(q.shape[-1]), out, threads, path)
    return out


def branch_attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, prefix: torch.Tensor,
                     own_first: torch.Tensor, own_stride: int, own_count: int, *,
                     threads: int | None = None) -> torch.Tensor:
    """Tree-step attention (bf16, CPU): row i of q [n, H, D] sees KV slots [0, prefix[i]) and then its
    own branch slots own_first[i] + j * own_stride for j < own_count. Returns [n, H, D] bf16; the
    arithmetic is the causal kernel's over that visible list. Bad slots raise ValueError."""
    for name, t in (("q", q), ("keys", keys), ("values", values)):
        if not isinstance(t, torch.Tensor) or t.dtype != torch.bfloat16 or t.device.type != "cpu" or t.dim() != 3:
            raise ValueError(f"{name}: expected a 3-d bfloat16 CPU tensor")
    threads = kernel_threads() if threads is None else threads
    out = torch.empty(q.shape, dtype=torch.bfloat16)
    core().branch_attention_bf16(_rows_of_heads(q), keys.contiguous(), values.contiguous(),
                                 prefix.to(torch.int64).contiguous(), own_first.to(torch.int64).contiguous(),
                                 int(own_stride), int(own_count), 1.0 / math.sqrt(q.shape[-1]), out, threads)
    return out


def rope_store(qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, q_heads: int, keys: torch.Tensor,
               values: torch.Tensor, start: int) -> None:
    """Rotate the q and k heads of qkv [n, q_heads + 2 * Hkv, D] in place and store each row's k and v heads
    in slot start + i of keys / values [Hkv, capacity, D] (bf16, CPU, contiguous; cos / sin [n, D]). The
    bits are those of saguaro.models.rotary.apply_rotary and two slice copies. Bad arguments raise ValueError."""
    core().rope_store_bf16(qkv, cos, sin, int(q_heads), keys, values, int(start))
