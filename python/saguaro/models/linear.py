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

    bf16 weights on the CPU run saguaro's batch-invariant small-M kernel (saguaro.kernels.linear) at
    every row count: each row's bits do not depend on the other rows, so a K+1-token verification
    gives exactly the logits of one-token decodes (and a prefill of several prompts together gives
    each the KV of its prefill alone). It beats torch's bf16 matmul on AVX2 CPUs at every M measured,
    1 to 512 rows (bench/results/linear.md: 4-6x from M = 5 up). Set the environment variable SAGUARO_CPU_LINEAR=torch (read at
    each call) to use torch's F.linear for every call instead.
    """

    _small = False  # subclasses with other weight formats never take the bf16 kernel

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        self.weight = weight.contiguous()
        self.bias = bias.contiguous() if bias is not None else None
        self._small = (self.weight.dtype == torch.bfloat16 and self.weight.device.type == "cpu"
                       and (self.bias is None or self.bias.dtype == torch.bfloat16))

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])

    def _use_small(self, x: torch.Tensor) -> bool:
        return (self._small and _kernel_enabled() and x.dtype == torch.bfloat16 and x.device.type == "cpu"
                and x.numel() > 0)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self._use_small(x):
            return small_linear.bf16_linear(x, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias)

    def forward_float(self, x: torch.Tensor) -> torch.Tensor:
        """``self(x).float()``, but straight from the fp32 accumulator when the small-M kernel runs
        (no bf16 rounding and no extra pass over the output: the output head's logits)."""
        if self._use_small(x):
            return small_linear.bf16_linear(x, self.weight, self.bias, out_dtype=torch.float32)
        return self(x).float()


class Int8Linear(Linear):
    """Weight-only int8 (symmetric, one scale per output row) via torch._weight_int8pack_mm.

    Only for a DRAFT model: it changes the draft's distribution (so acceptance), never the output.
    Helps single-token steps (fewer bytes moved); multi-token forwards are not faster.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        w = weight.float()
        scales = w.abs().amax(dim=1).clamp_min(1e-12) / 127.0
        q = torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8).contiguous()
        self.weight = q
        self.scales = scales.to(weight.dtype).contiguous()
        self.bias = bias.contiguous() if bias is not None else None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = torch._weight_int8pack_mm(x.reshape(-1, shape[-1]), self.weight, self.scales)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], y.shape[-1])
