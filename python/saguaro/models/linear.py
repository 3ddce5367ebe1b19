"""Linear projections: plain (bf16/fp32) and the optional weight-only int8 form for a draft model."""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from saguaro.kernels import linear as small_linear


def _kernel_enabled() -> bool:
    return os.environ.get("SAGUARO_CPU_LINEAR", "").strip().lower() != "torch" and small_linear.available()


class Linear:
    """y = x W^T + b with W [out, in] in the model's dtype.

    bf16 weights on the CPU (when the AVX2 kernel runs) are packed once into saguaro's panel layout
    and run its batch-invariant small-M kernel (saguaro.kernels.linear) at every row count: each
    row's bits do not depend on the other rows, so a K+1-token verification gives exactly the logits
    of one-token decodes (and a prefill of several prompts together gives each the KV of its prefill
    alone). Only the packed copy is kept; ``weight`` unpacks on first use. It beats torch's bf16
    matmul on AVX2 CPUs at every M measured (bench/results/linear.md). Set the environment variable
    SAGUARO_CPU_LINEAR=torch (read at each call) to use torch's F.linear for every call instead.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        self.bias = bias.contiguous() if bias is not None else None
        self.weight = weight

    @property
    def weight(self) -> torch.Tensor:
        """W [out, in] (unpacked from the panel layout on first use and kept)."""
        if self._weight is None:
            self._weight = self.packed.unpack()
        return self._weight

    @weight.setter
    def weight(self, weight: torch.Tensor) -> None:
        self.packed: small_linear.PackedBf16 | None = None
        self._weight: torch.Tensor | None = weight.contiguous()
        if (weight.dtype == torch.bfloat16 and weight.device.type == "cpu" and weight.dim() == 2
                and weight.numel() > 0 and (self.bias is None or self.bias.dtype == torch.bfloat16)
                and small_linear.available()):
            self.packed = small_linear.pack_bf16(self._weight)
            self._weight = None  # one copy of the weights: the packed one

    @property
    def out_features(self) -> int:
        return int(self.packed.out_features if self.packed is not None else self._weight.shape[0])

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """W[ids]: the embedding lookup of a tied output head, without unpacking the weight."""
        if self._weight is None:
            return self.packed.rows(ids)
        return F.embedding(ids, self._weight)

    def _use_small(self, x: torch.Tensor) -> bool:
        return (self.packed is not None and x.dtype == torch.bfloat16 and x.device.type == "cpu"
                and x.numel() > 0 and _kernel_enabled())

    def _small(self, x: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1]).contiguous()
        out = torch.empty((x2.shape[0], self.packed.out_features), dtype=out_dtype)
        small_linear.core().small_gemm_bf16_packed(x2, self.packed.data, self.packed.out_features, self.bias, out,
                                                   torch.get_num_threads(), "auto")
        return out.reshape(*lead, self.packed.out_features)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self._use_small(x):
            return self._small(x, torch.bfloat16)
        return F.linear(x, self.weight, self.bias)

    def forward_float(self, x: torch.Tensor) -> torch.Tensor:
        """``self(x).float()``, but straight from the fp32 accumulator when the small-M kernel runs
        (no bf16 rounding and no extra pass over the output: the output head's logits)."""
        if self._use_small(x):
            return self._small(x, torch.float32)
        return self(x).float()


class Int8Linear(Linear):
    """Weight-only int8 (symmetric, one scale per output row) via torch._weight_int8pack_mm.

    Only for a DRAFT model: it changes the draft's distribution (so acceptance), never the output.
    On AVX2 CPUs saguaro's packed bf16 kernel is now faster at every row count (0.5B decode 65 vs
    80 ms, bench/results/models.md); int8 remains for CPUs where that kernel does not run.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        w = weight.float()
        scales = w.abs().amax(dim=1).clamp_min(1e-12) / 127.0
        q = torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8).contiguous()
        self._weight = q
        self.packed = None
        self.scales = scales.to(weight.dtype).contiguous()
        self.bias = bias.contiguous() if bias is not None else None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = torch._weight_int8pack_mm(x.reshape(-1, shape[-1]), self.weight, self.scales)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], y.shape[-1])
