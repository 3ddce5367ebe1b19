"""RMSNorm, computed in float32 like the reference implementations."""
from __future__ import annotations

import torch

from saguaro.kernels import norm as norm_kernel


class RMSNorm:
    """x / rms(x) * weight over the last dimension.

    A bf16 model on the CPU runs it as one extension call (saguaro.kernels.norm: the squares summed in
    double); other dtypes and devices run the torch formula."""

    def __init__(self, weight: torch.Tensor, eps: float) -> None:
        self.weight = weight.contiguous()
        self.eps = eps

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if norm_kernel.applies(x, self.weight):
            return norm_kernel.rms_norm_bf16(x, self.weight, self.eps)
        dtype = x.dtype
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(dtype)

    def add_and_norm(self, x: torch.Tensor, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x + delta, norm(x + delta)): a residual add and the norm that reads it, one extension call for
        a bf16 CPU model (the same bits as the add and the norm apart)."""
        if norm_kernel.applies(x, self.weight) and delta.dtype == x.dtype and delta.shape == x.shape \
                and delta.device.type == "cpu":
            return norm_kernel.add_rms_norm_bf16(x, delta, self.weight, self.eps)
        total = x + delta
        return total, self(total)
