"""Rotary position embedding tables (plain, Llama 3 frequency scaling, per-frequency divisors)."""
from __future__ import annotations

import math

import torch

from saguaro.models.config import ModelConfig, check_rope_scaling


def inverse_frequencies(config: ModelConfig) -> torch.Tensor:
    """inv_freq[head_dim/2] in float32, with the config's rope_scaling applied.

    rope_type "llama3": Llama 3 scaling; "freq_factors": plain inv_freq divided by the given factors
    (llama.cpp's rope_freqs); none or "default": plain. Bad factors raise ValueError, other kinds
    NotImplementedError.
    """
    dim = config.head_dim
    inv = 1.0 / (config.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    s = config.rope_scaling
    kind = check_rope_scaling(s, dim)  # again here: rope_scaling may be set after construction
    if kind is None:
        return inv
    assert s is not None
    if kind == "freq_factors":
        return inv / torch.tensor([float(f) for f in s["factors"]], dtype=torch.float32)
    # Llama 3: keep high frequencies, divide low ones by `factor`, blend smoothly in between.
    factor = float(s["factor"])
    low = float(s.get("low_freq_factor", 1.0))
    high = float(s.get("high_freq_factor", 4.0))
    old_len = float(s.get("original_max_position_embeddings", 8192))
    low_wavelen = old_len / low
    high_wavelen = old_len / high
    wavelen = 2 * math.pi / inv
    scaled = torch.where(wavelen > low_wavelen, inv / factor, inv)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
    return torch.where(medium, smoothed, scaled)


class RotaryTable:
    """cos/sin for every position below `capacity`, precomputed once in the model's dtype."""

    def __init__(self, config: ModelConfig, capacity: int, dtype: torch.dtype, device: torch.device) -> None:
        inv = inverse_frequencies(config)
        pos = torch.arange(capacity, dtype=torch.int64).float()
        freqs = torch.outer(pos, inv)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.capacity = capacity
        self.cos = emb.cos().to(dtype=dtype, device=device).contiguous()
        self.sin = emb.sin().to(dtype=dtype, device=device).contiguous()

    def lookup(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin rows [N, 1, head_dim] for int64 positions [N]."""
        return self.cos[positions].unsqueeze(1), self.sin[positions].unsqueeze(1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [N, heads, head_dim] rotated by the (cos, sin) of its token's position."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin
