"""RMSNorm of bf16 CPU rows in one extension call (``saguaro._core.rms_norm_bf16``).

The torch formula of :class:`saguaro.models.norm.RMSNorm` is eight operators (float, pow, mean, add,
rsqrt, mul, to, mul); at decode sizes each is call overhead, and a decode step of the 1.5B runs 57
norms. The kernel does the same operations on each row, the squares summed in double (as llama.cpp's
rms_norm does) where torch sums floats in its own order, so a bf16 output may differ in its last bit.
"""
from __future__ import annotations

import functools

import torch

from saguaro.kernels.small_gemm import core

__all__ = ["add_rms_norm_bf16", "applies", "rms_norm_bf16"]


@functools.lru_cache(maxsize=1)
def _built() -> bool:
    try:
        return hasattr(core(), "rms_norm_bf16")
    except ImportError:
        return False


def applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """True when :func:`rms_norm_bf16` runs these: bf16 CPU x and weight, the extension built."""
    return (x.dtype == torch.bfloat16 and weight.dtype == torch.bfloat16 and x.device.type == "cpu"
            and weight.device.type == "cpu" and x.numel() > 0 and _built())


def rms_norm_bf16(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """weight * bf16(x * rsqrt(mean(x^2, -1) + eps)) over the last dimension of bf16 CPU x (any leading
    shape); weight [D] bf16. Bad arguments raise ValueError."""
    d = x.shape[-1]
    x2 = x.reshape(-1, d).contiguous()
    out = torch.empty_like(x2)
    core().rms_norm_bf16(x2, weight.contiguous(), float(eps), out)
    return out.reshape(x.shape)


def add_rms_norm_bf16(x: torch.Tensor, delta: torch.Tensor, weight: torch.Tensor,
                      eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(x + delta, rms_norm_bf16(x + delta)) in one call for bf16 CPU x and delta of one shape [..., D]: a
    residual add and the next norm. The sum has the bits of torch's bf16 add. Bad arguments raise ValueError."""
    d = x.shape[-1]
    x2, d2 = x.reshape(-1, d).contiguous(), delta.reshape(-1, d).contiguous()
    total, out = torch.empty_like(x2), torch.empty_like(x2)
    core().add_rms_norm_bf16(x2, d2, weight.contiguous(), float(eps), total, out)
    return total.reshape(x.shape), out.reshape(x.shape)
