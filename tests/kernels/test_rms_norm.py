"""The bf16 RMSNorm kernel (saguaro.kernels.norm) against the torch formula it replaces."""
from __future__ import annotations

import pytest
import torch

from saguaro.kernels import norm
from saguaro.models.norm import RMSNorm

pytestmark = pytest.mark.skipif(not norm._built(), reason="the extension has no rms_norm_bf16")


def torch_rms_norm(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    h = x.float()
    return w * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


@pytest.mark.parametrize("d", [64, 896, 1536, 3584])
def test_matches_the_torch_formula_to_the_last_bit_but_rarely(d):
    g = torch.Generator().manual_seed(d)
    x = (torch.randn(64, d, generator=g) * 3).bfloat16()
    x[5] *= 1e-3  # a small-norm row: eps matters
    w = torch.randn(d, generator=g).bfloat16()
    got, want = norm.rms_norm_bf16(x, w, 1e-6), torch_rms_norm(x, w, 1e-6)
    # only the order of the float sum may differ (double here): at most one bf16 step, almost never
    ulp = (got.view(torch.int16).int() - want.view(torch.int16).int()).abs()
    assert ulp.max() <= 1 and (ulp > 0).float().mean() < 1e-3


def test_each_row_is_computed_alone_and_leading_dims_are_kept():
    x = torch.randn(2, 5, 128).bfloat16()
    w = torch.randn(128).bfloat16()
    whole = norm.rms_norm_bf16(x, w, 1e-5)
    assert whole.shape == x.shape and whole.dtype == torch.bfloat16
    for i in range(2):
        for j in range(5):
            assert torch.equal(norm.rms_norm_bf16(x[i, j:j + 1], w, 1e-5)[0], whole[i, j])


def test_the_model_norm_takes_the_kernel_for_bf16_only():
    w = torch.randn(64)
    x = torch.randn(3, 64)
    assert torch.equal(RMSNorm(w, 1e-6)(x), torch_rms_norm(x, w, 1e-6))  # fp32: the torch formula
    assert not norm.applies(x, w) and norm.applies(x.bfloat16(), w.bfloat16())
    got = RMSNorm(w.bfloat16(), 1e-6)(x.bfloat16())
    assert torch.equal(got, norm.rms_norm_bf16(x.bfloat16(), w.bfloat16(), 1e-6))


def test_bad_arguments_raise_value_error():
    x = torch.randn(2, 8).bfloat16()
    with pytest.raises(ValueError, match="weight"):
        norm.rms_norm_bf16(x, torch.randn(7).bfloat16(), 1e-6)
    with pytest.raises(ValueError, match="eps"):
        norm.rms_norm_bf16(x, torch.randn(8).bfloat16(), 0.0)
    with pytest.raises(ValueError, match="bfloat16"):
        norm.core().rms_norm_bf16(x.float(), torch.randn(8).bfloat16(), 1e-6, torch.empty(2, 8).bfloat16())
