"""The SwiGLU feed-forward block, with gate and up projections fused into one matmul."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from saguaro.kernels import swiglu
from saguaro.models.linear import Linear


class MLP:
    """down(silu(gate(x)) * up(x)); gate_up holds [gate; up] stacked on the output dimension."""

    def __init__(self, gate_up: Linear, down: Linear) -> None:
        self.gate_up = gate_up
        self.down = down
        self.intermediate = gate_up.out_features // 2

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        gu = self.gate_up(x)
        if swiglu.applies(gu):  # a bf16 CPU model: one call, torch's roundings
            return self.down(swiglu.silu_mul_bf16(gu))
        gate, up = gu[..., : self.intermediate], gu[..., self.intermediate :]
        return self.down(F.silu(gate) * up)
