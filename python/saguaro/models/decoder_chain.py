"""All layers of a quantized bf16 CPU decoder over its sequences' new rows in one extension call.

A decode or a verification chain of a GGUF model on the CPU runs ~10 kernels a layer; from Python, the
~30 Python and torch calls between them cost ~11 ms of a ~63 ms decode of the 1.5B on two cores.
``saguaro._core.DecoderChain`` (include/saguaro/decoder_chain.hpp) runs the same kernels in the same order
from C++, so its bits are the Python path's (tests/models/test_decoder_chain.py): decodes, verifications and
tree steps, of one sequence or a batch. Prefills of more than 32 rows (masked SDPA), other dtypes and
devices keep the Python path.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from saguaro.kernels import attention as attention_kernel
from saguaro.kernels import norm as norm_kernel
from saguaro.kernels import swiglu
from saguaro.kernels.small_gemm import core
from saguaro.kernels.threads import kernel_threads
from saguaro.models.attention import AttentionGroup, _kernel_rows
from saguaro.models.quant_linear import QuantLinear

if TYPE_CHECKING:
    from saguaro.models.decoder import DecoderLayer
    from saguaro.models.norm import RMSNorm


class DecoderChain:
    """The C++ chain of a model's layers; `build` returns None where it does not apply."""

    def __init__(self, native: object) -> None:
        self._native = native

    @classmethod
    def build(cls, layers: list["DecoderLayer"], dtype: torch.dtype, device: torch.device) -> "DecoderChain | None":
        """A chain over `layers` when every projection is a QuantLinear on the CPU, the model is bf16 without
        q/k norms, and the extension has the chain and its kernels."""
        if not layers or dtype != torch.bfloat16 or device.type != "cpu":
            return None
        try:
            ext = core()
        except ImportError:
            return None
        if not (hasattr(ext, "DecoderChain") and attention_kernel.available() and norm_kernel._built()
                and swiglu._built()):
            return None
        a0, m0 = layers[0].attention, layers[0].mlp
        eps = layers[0].attn_norm.eps
        args = []
        for lay in layers:
            a, m = lay.attention, lay.mlp
            projections = (a.qkv, a.out, m.gate_up, m.down)
            norms = (lay.attn_norm, lay.mlp_norm)
            if (a.q_norm is not None or not all(isinstance(p, QuantLinear) for p in projections)
                    or any(n.eps != eps or n.weight.dtype != torch.bfloat16 for n in norms)
                    or (a.h, a.kvh, a.d, m.intermediate) != (a0.h, a0.kvh, a0.d, m0.intermediate)):
                return None
            args.append((lay.attn_norm.weight, lay.mlp_norm.weight) + tuple(p.projection for p in projections))
        hidden = a0.qkv.qweight.in_features
        return cls(ext.DecoderChain(args, hidden, a0.h, a0.kvh, a0.d, m0.intermediate, float(eps)))

    @staticmethod
    def applies(x: torch.Tensor, cos: torch.Tensor, groups: list[AttentionGroup]) -> bool:
        """Decodes, verification chains and prefills (no mask) and tree steps (branches) of any number of
        sequences, where the Python path would run the attention kernel too (attention.kernel_runs)."""
        if not groups or cos.dim() != 3 or not cos.is_contiguous() or not _kernel_rows(x):
            return False
        row = 0
        for g in groups:
            if (g.row_start != row or g.write_index is not None or not g.kv.buffer.is_contiguous()
                    or not ((g.causal and g.mask is None) or g.branches is not None)):
                return False
            row = g.row_end
        return row == x.shape[0]

    def run(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, groups: list[AttentionGroup],
            final_norm: "RMSNorm | None") -> torch.Tensor | None:
        """Every layer over x [n, hidden] (in place). Returns final_norm of the output, or None (and x holds
        the output) when final_norm is None."""
        n, d = x.shape[0], cos.shape[-1]
        normed = torch.empty_like(x) if final_norm is not None else None
        spans = [(g.row_start, g.row_end, g.kv.buffer, g.write_start, self._branches(g)) for g in groups]
        self._native.forward(x, cos.view(n, d), sin.view(n, d), spans,
                             final_norm.weight if final_norm is not None else None, normed, kernel_threads())
        return normed

    @staticmethod
    def _branches(g: AttentionGroup) -> tuple | None:
        if g.branches is None or (g.causal and g.mask is None):
            return None
        prefix, own_first, stride, count = g.branches
        return (prefix.to(torch.int64).contiguous(), own_first.to(torch.int64).contiguous(), int(stride), int(count))
