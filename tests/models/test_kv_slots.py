"""A CPU KV slot is left unwritten when it is allocated (kv_cache._new_slot): no CPU attention path may
read a position no forward wrote. Slots filled with NaN must give the bits of zeroed ones. The step
graphs' fixed spans do read past what was written: an adapter running them asks for zeroed slots."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import make_hf, native_from_hf
from gguf_writer import write_gguf

import saguaro.models as M
from saguaro.kernels import attention as attention_kernel
from saguaro.kernels import quant
from saguaro.models import kv_cache


def _poisoned(shape, dtype, device, zeroed):
    """The worst an unwritten slot may hold: NaN everywhere (reused memory), unless zeroing was asked for."""
    if zeroed:
        return torch.zeros(shape, dtype=dtype, device=device)
    return torch.full(shape, float("nan"), dtype=dtype, device=device)


def _zeroed(shape, dtype, device, zeroed):
    return torch.zeros(shape, dtype=dtype, device=device)


def _workload(adapter) -> list[torch.Tensor]:
    """Prefill, a 4-token verification, a two-sequence tree of four depths, a released slot reused."""
    g = torch.Generator().manual_seed(5)
    tok = lambda n: torch.randint(0, 97, (n,), generator=g).tolist()  # noqa: E731
    out = [adapter.prefill([1, 2], [tok(9), tok(14)])]
    out.append(adapter.extend([1, 2], [tok(4), tok(1)]))
    seq_ids, visible = [1, 2, 1, 2], [13, 15, 11, 12]
    for depth in range(4):
        out.append(adapter.tree_step(seq_ids, visible, tok(4), depth))
    adapter.release(1)
    out.append(adapter.prefill([3], [tok(6)]))  # the released slot, its old KV and tree scratch behind
    out.append(adapter.extend([3, 2], [tok(3), tok(2)]))
    out.append(adapter.prefill([4], [tok(40)]))  # more than 32 rows: a masked causal prefill
    return out


@pytest.mark.parametrize("dtype,attention", [(torch.float32, ""), (torch.bfloat16, ""), (torch.bfloat16, "torch")],
                         ids=["fp32-sdpa", "bf16-kernel", "bf16-sdpa"])
def test_unwritten_slot_positions_are_never_read(monkeypatch, dtype, attention):
    monkeypatch.setenv("SAGUARO_CPU_ATTENTION", attention)
    hf = make_hf("qwen2-untied")
    runs = {}
    for name, slot in (("zeroed", _zeroed), ("poisoned", _poisoned)):
        monkeypatch.setattr(kv_cache, "_new_slot", slot)
        runs[name] = _workload(native_from_hf(hf, dtype=dtype))
    for i, (a, b) in enumerate(zip(runs["zeroed"], runs["poisoned"])):
        assert torch.isfinite(b).all(), f"call {i} read a position no forward wrote"
        assert torch.equal(a, b), f"call {i}"


def test_step_graphs_fixed_spans_get_zeroed_slots(monkeypatch):
    # The fixed-shape forwards (CUDA graphs; on the CPU run eagerly) attend over a bucketed span past
    # the written positions, so their adapter asks for zeroed slots; the ordinary CPU adapter does not.
    hf = make_hf("qwen2-untied")
    assert native_from_hf(hf, cuda_graphs=True)._cache.zeroed
    assert not native_from_hf(hf, cuda_graphs=False)._cache.zeroed
    monkeypatch.setattr(kv_cache, "_new_slot", _poisoned)
    plain, fixed = native_from_hf(hf, cuda_graphs=False), native_from_hf(hf, cuda_graphs=True)
    for s in (plain, fixed):
        s.prefill([1], [list(range(3, 43))])
    for a, b in ((plain.extend([1], [[5, 6, 7]]), fixed.extend([1], [[5, 6, 7]])),
                 (plain.tree_step([1, 1], [43, 42], [8, 9], 0), fixed.tree_step([1, 1], [43, 42], [8, 9], 0))):
        assert torch.isfinite(b).all()
        assert (a - b).abs().max().item() <= 1e-5


def test_a_read_past_the_written_positions_would_show():
    # The check above can fail: attention over a span that reaches one unwritten (NaN) slot, masked
    # out as a GPU step graph masks its fixed span, gives NaN, because the masked weight 0 times NaN is NaN.
    slot = _poisoned((2, 8, 4), torch.float32, "cpu", zeroed=False)
    slot[:, :5] = torch.randn(2, 5, 4)
    q = torch.randn(1, 2, 1, 4)
    mask = torch.zeros(1, 6, dtype=torch.bool)
    mask[:, :5] = True
    written = F.scaled_dot_product_attention(q, slot[None, :, :5], slot[None, :, :5])
    past = F.scaled_dot_product_attention(q, slot[None, :, :6], slot[None, :, :6], attn_mask=mask)
    assert torch.isfinite(written).all()
    assert torch.isnan(past).any()


@pytest.mark.skipif(not (quant.available() and attention_kernel.available()),
                    reason="the decoder chain runs the quantized and attention kernels (AVX2+FMA CPUs)")
def test_unwritten_slot_positions_are_never_read_by_the_decoder_chain(monkeypatch, tmp_path):
    gguf = write_gguf(make_hf("qwen2-untied"), tmp_path / "m.gguf", quant="Q8_0")
    runs = {}
    for name, slot in (("zeroed", _zeroed), ("poisoned", _poisoned)):
        monkeypatch.setattr(kv_cache, "_new_slot", slot)
        adapter = M.load(gguf, quantized=True, dtype=torch.bfloat16).adapter
        assert adapter.model.chain is not None
        runs[name] = _workload(adapter)
    for i, (a, b) in enumerate(zip(runs["zeroed"], runs["poisoned"])):
        assert torch.isfinite(b).all(), f"call {i} read a position no forward wrote"
        assert torch.equal(a, b), f"call {i}"
