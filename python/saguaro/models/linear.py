"""Linear projections: plain (bf16/fp32) and the optional weight-only int8 form for a draft model."""
from __future__ import annotations

import torch
import torch.nn.functional as F


class Linear:
    """y = x W^T + b with W [out, in] in the model's dtype."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        self.weight = weight.contiguous()
        self.bias = bias.contiguous() if bias is not None else None

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


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
