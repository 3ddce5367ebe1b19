"""int8 drafts: the dynamic int8 projection against a PyTorch reference of its arithmetic, the model
built with it, and the int8 settings' errors."""
from __future__ import annotations

import pytest
import torch

from conftest import make_hf

import saguaro.models as M
from saguaro.models.linear import DynamicInt8Linear, Int8Linear, Linear, linear_class


def _reference(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """float64 model of the dynamic kernel: weights symmetric int8 per output row, the call's inputs
    asymmetric 7-bit with one scale (zero included in the range), integer dot products."""
    ws = w.abs().amax(1) / 127
    wq = torch.round(w / ws[:, None]).clamp(-127, 127).double()
    lo, hi = min(x.min().item(), 0.0), max(x.max().item(), 0.0)
    xs = (hi - lo) / 127
    zp = round(-lo / xs)
    xq = torch.clamp(torch.round(x / xs) + zp, 0, 127).double()
    y = ((xq - zp) @ wq.t()) * xs * ws.double()[None, :]
    return y + b.double() if b is not None else y


@pytest.mark.parametrize("n, k, m", [(64, 48, 1), (300, 128, 8), (1024, 896, 16)])
def test_dynamic_int8_matches_its_reference(n, k, m):
    g = torch.Generator().manual_seed(n + m)
    w = torch.randn(n, k, generator=g).bfloat16()
    b = torch.randn(n, generator=g).bfloat16()
    x = (3 * torch.randn(m, k, generator=g)).bfloat16()
    y = DynamicInt8Linear(w, b).forward_float(x).double()
    ref = _reference(x.float(), w.float(), b.float())
    exact = x.double() @ w.double().t() + b.double()
    quant_err = (ref - exact).abs().max().item()
    err = (y - ref).abs().max().item()
    assert quant_err > 0
    # fbgemm rounds its activation scale in fp32: the kernel is far closer to its model than to fp64
    assert err <= 2e-3 * ref.abs().max().item() and err <= 0.2 * quant_err
    # a planted change (8-bit activations, no reduce_range) is not within that tolerance of the model
    planted = torch.ops.quantized.linear_dynamic(x.float(), DynamicInt8Linear(w, b).params, False).double()
    assert (planted - ref).abs().max().item() > err


def test_dynamic_int8_rows_and_selection():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(200, 64, generator=g).bfloat16()
    lin = DynamicInt8Linear(w)
    x = torch.randn(5, 64, generator=g).bfloat16()
    ids = torch.tensor([0, 3, 77, 199])
    assert torch.equal(lin.select_rows(ids).forward_float(x), lin.forward_float(x)[:, ids])
    assert lin(x).dtype == torch.bfloat16 and lin.out_features == 200
    assert (lin.rows(ids).float() - w[ids].float()).abs().max().item() <= w.float().abs().max().item() / 127
    with pytest.raises(AttributeError, match="fixed"):
        lin.weight = w


@pytest.mark.parametrize("int8", ["weight", "dynamic"])
def test_int8_draft_is_close_but_not_equal(int8):
    hf = make_hf("qwen2-untied")
    config = M.ModelConfig.from_hf_dict(hf.config.to_dict())
    sd = dict(hf.state_dict())
    full = M.NativeModelAdapter(M.DecoderModel.from_state_dict(config, sd, dtype=torch.bfloat16))
    q8 = M.NativeModelAdapter(M.DecoderModel.from_state_dict(config, sd, dtype=torch.bfloat16, int8=int8))
    tokens = list(range(1, 30))
    a, b = full.prefill([0], [tokens]), q8.prefill([0], [tokens])
    assert 0 < (a - b).abs().max().item() < 0.1 * a.abs().max().item()
    ta = full.tree_step([0, 0], [29, 29], [3, 4], 0)
    tb = q8.tree_step([0, 0], [29, 29], [3, 4], 0)
    assert 0 < (ta - tb).abs().max().item() < 0.1 * ta.abs().max().item()


def test_int8_settings():
    assert linear_class(False) is Linear and linear_class(None) is Linear
    assert linear_class(True) is Int8Linear and linear_class("weight") is Int8Linear
    assert linear_class("dynamic") is DynamicInt8Linear
    with pytest.raises(ValueError, match="'dynamic'"):
        linear_class("int4")
    with pytest.raises(ValueError, match="'dynamic'"):
        M.load("no-such-model", int8="w8a8")
    with pytest.raises(ValueError, match="already built"):
        M.load(lambda tokens: torch.zeros(*tokens.shape, 5), int8=True)


def test_dynamic_int8_needs_the_cpu():
    with pytest.raises(ValueError, match="CPU only"):
        DynamicInt8Linear(torch.zeros(4, 4, device="meta"))
