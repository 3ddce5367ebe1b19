"""Grouped-query self-attention over the per-sequence KV slots, with explicit masks for trees."""
from __future__ import annotations

import dataclasses
import os

import torch
import torch.nn.functional as F

from saguaro.kernels import attention as attention_kernel
from saguaro.models.kv_cache import SequenceKV
from saguaro.models.linear import Linear
from saguaro.models.norm import RMSNorm
from saguaro.models.rotary import apply_rotary


@dataclasses.dataclass
class AttentionGroup:
    """The tokens of one sequence in a batched forward.

    Rows [row_start, row_end) of the flat batch are written to KV slots
    [write_start, write_start + n) and attend to slots [0, kv_len) under `mask`
    (bool [n, kv_len], True = may attend; None = every query sees all kv_len slots).
    causal=True (a chain of new tokens): row i sees slots [0, write_start + i]. With mask None each
    row gets its own attention (the kernel, or one SDPA call a row: ROW_BY_ROW_MAX); otherwise `mask`
    is that causal mask.
    """

    kv: SequenceKV
    row_start: int
    row_end: int
    write_start: int
    kv_len: int
    mask: torch.Tensor | None
    causal: bool = False
    #: a tree step's rows as (prefix [n] int64, own_first [n] int64, own_stride, own_count): row i sees
    #: slots [0, prefix[i]) and own_first[i] + j * own_stride (j < own_count); `mask` says the same.
    branches: tuple[torch.Tensor, torch.Tensor, int, int] | None = None
    #: the KV slots to write, as a tensor [n] (int64, on the KV's device) instead of write_start: a
    #: captured CUDA graph replays with new slots in the same tensor (saguaro.models.step_graphs);
    #: `mask` is then required and kv_len is the graph's fixed span
    write_index: torch.Tensor | None = None


#: Where SDPA runs (not the kernel: kernel_runs), causal chains of at most this many rows
#: (verification, decode) get no mask from the adapter and run attention one query row at a time: the
#: very call a one-token decode makes, so a K+1-token verification gives each row the bits of K+1
#: successive decodes (multi-query SDPA reduces in a row-count-dependent order on the CPU). With the
#: batch-invariant linears this makes greedy bf16 speculative decoding exact. The kernel gives every
#: row of a chain of any length (prefills too) its decode's bits.
ROW_BY_ROW_MAX = 32


def kernel_runs(dtype: torch.dtype, device: torch.device | str) -> bool:
    """Whether attention in ``dtype`` on ``device`` runs saguaro's kernel: bf16 CPU chains of any length
    (prefills included: one call, each row with the bits of its one-row decode, on the kernel threads)
    and tree steps (a tree's branches without a mask); SAGUARO_CPU_ATTENTION=torch (read per call) keeps
    SDPA (one call per chain row up to ROW_BY_ROW_MAX rows, one masked call per prefill or tree step)."""
    return (dtype == torch.bfloat16 and torch.device(device).type == "cpu" and attention_kernel.available()
            and os.environ.get("SAGUARO_CPU_ATTENTION", "").strip().lower() != "torch")


def _kernel_rows(q: torch.Tensor) -> bool:
    return kernel_runs(q.dtype, q.device)


class Attention:
    """q/k/v from one fused projection, optional q/k RMSNorm (Qwen3), rotary, SDPA, output projection."""

    def __init__(self, layer: int, qkv: Linear, out: Linear, num_heads: int, num_kv_heads: int,
                 head_dim: int, q_norm: RMSNorm | None = None, k_norm: RMSNorm | None = None) -> None:
        self.layer = layer
        self.qkv = qkv
        self.out = out
        self.h = num_heads
        self.kvh = num_kv_heads
        self.d = head_dim
        self.q_norm = q_norm
        self.k_norm = k_norm
        self.gqa = num_heads != num_kv_heads

    def __call__(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                 groups: list[AttentionGroup]) -> torch.Tensor:
        n = x.shape[0]
        h, kvh, d = self.h, self.kvh, self.d
        qkv = self.qkv(x).view(n, h + 2 * kvh, d)
        layer = self.layer
        if self._fused_rope(qkv, cos, groups):
            # one call a group rotates q / k in place and stores k / v; attention reads q from the rows
            cos2, sin2 = cos.view(n, d), sin.view(n, d)
            for g in groups:
                r = slice(g.row_start, g.row_end)
                attention_kernel.rope_store(qkv[r], cos2[r], sin2[r], h, g.kv.keys[layer], g.kv.values[layer],
                                            g.write_start)
            q = qkv[:, :h]
            outs = [self._attend(q[g.row_start : g.row_end], g, layer) for g in groups]
            return self.out((outs[0] if len(outs) == 1 else torch.cat(outs, dim=0)).reshape(n, h * d))
        if self.q_norm is not None:
            q = apply_rotary(self.q_norm(qkv[:, :h]), cos, sin)
            k = apply_rotary(self.k_norm(qkv[:, h : h + kvh]), cos, sin)
        else:
            qk = apply_rotary(qkv[:, : h + kvh], cos, sin)
            q, k = qk[:, :h], qk[:, h:]
        v = qkv[:, h + kvh :]
        if len(groups) == 1:
            return self.out(self._group(q, k, v, groups[0], layer).reshape(n, h * d))
        outs = [self._group(q[g.row_start : g.row_end], k[g.row_start : g.row_end],
                            v[g.row_start : g.row_end], g, layer) for g in groups]
        return self.out(torch.cat(outs, dim=0).reshape(n, h * d))

    def _fused_rope(self, qkv: torch.Tensor, cos: torch.Tensor, groups: list[AttentionGroup]) -> bool:
        """The rotation and KV store run as saguaro.kernels.attention.rope_store (the same bits) where the
        attention kernel runs: bf16 CPU, no q/k norm, slots written from write_start, cos / sin rows as
        RotaryTable.lookup gives them."""
        return (self.q_norm is None and _kernel_rows(qkv) and cos.shape == (qkv.shape[0], 1, self.d)
                and cos.is_contiguous() and all(g.write_index is None for g in groups))

    def _group(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: AttentionGroup,
               layer: int) -> torch.Tensor:
        n = q.shape[0]
        kc, vc = g.kv.keys[layer], g.kv.values[layer]
        if g.write_index is not None:
            kc.index_copy_(1, g.write_index, k.transpose(0, 1))
            vc.index_copy_(1, g.write_index, v.transpose(0, 1))
        else:
            end = g.write_start + n
            kc[:, g.write_start : end].copy_(k.transpose(0, 1))
            vc[:, g.write_start : end].copy_(v.transpose(0, 1))
        return self._attend(q, g, layer)

    def _attend(self, q: torch.Tensor, g: AttentionGroup, layer: int) -> torch.Tensor:
        """The group's attention over its KV slots (its new rows already stored)."""
        n = q.shape[0]
        kc, vc = g.kv.keys[layer], g.kv.values[layer]
        if g.causal and g.mask is None:
            if _kernel_rows(q):
                return attention_kernel.causal_attention(q, kc, vc, g.write_start)
            rows = [F.scaled_dot_product_attention(q[i : i + 1].transpose(0, 1).unsqueeze(0),
                                                   kc[:, : g.write_start + i + 1].unsqueeze(0),
                                                   vc[:, : g.write_start + i + 1].unsqueeze(0), enable_gqa=self.gqa)
                    for i in range(n)]
            return torch.cat(rows, dim=2)[0].transpose(0, 1)
        if g.branches is not None and _kernel_rows(q):
            prefix, own_first, stride, count = g.branches
            return attention_kernel.branch_attention(q, kc, vc, prefix, own_first, stride, count)
        o = F.scaled_dot_product_attention(
            q.transpose(0, 1).unsqueeze(0),
            kc[:, : g.kv_len].unsqueeze(0),
            vc[:, : g.kv_len].unsqueeze(0),
            attn_mask=g.mask,
            enable_gqa=self.gqa,
        )
        return o[0].transpose(0, 1)
