"""The fused steps of a bf16 CPU decoder layer against the torch operators they replace, to the bit:
rotary + KV store (saguaro.kernels.attention.rope_store), residual add + RMSNorm
(saguaro.kernels.norm.add_rms_norm_bf16), SwiGLU's silu * up (saguaro.kernels.swiglu), attention
reading q with a row stride, and a whole native model with and without them."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from saguaro.kernels import attention as attention_kernel
from saguaro.kernels import norm, swiglu
from saguaro.kernels.quant import isa
from saguaro.models import attention as attention_model
from saguaro.models import norm as norm_model
from saguaro.models.rotary import apply_rotary

pytestmark = pytest.mark.skipif(not attention_kernel.available() or not norm._built(),
                                reason="the fused steps run where the attention kernel does (AVX2+FMA CPUs)")


def _rows(n: int, h: int, kvh: int, d: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    qkv = (torch.randn(n, h + 2 * kvh, d, generator=g) * 4).bfloat16()
    angles = torch.rand(n, 1, d // 2, generator=g) * 100
    cos = torch.cat([angles.cos()] * 2, dim=-1).bfloat16()
    sin = torch.cat([angles.sin()] * 2, dim=-1).bfloat16()
    return qkv, cos, sin


@pytest.mark.parametrize("n,h,kvh,d", [(1, 12, 2, 128), (5, 12, 2, 128), (16, 14, 2, 64), (3, 8, 8, 32), (2, 4, 1, 2)])
def test_rope_store_has_the_bits_of_the_torch_rotation_and_copies(n, h, kvh, d):
    qkv, cos, sin = _rows(n, h, kvh, d, seed=n * 1000 + d)
    cap, start = n + 9, 6
    g = torch.Generator().manual_seed(d)
    keys, values = torch.randn(kvh, cap, d, generator=g).bfloat16(), torch.randn(kvh, cap, d, generator=g).bfloat16()
    want_qk = apply_rotary(qkv[:, : h + kvh], cos, sin)
    want_k, want_v = keys.clone(), values.clone()
    want_k[:, start : start + n] = want_qk[:, h:].transpose(0, 1)
    want_v[:, start : start + n] = qkv[:, h + kvh :].transpose(0, 1)
    v_before = qkv[:, h + kvh :].clone()
    attention_kernel.rope_store(qkv, cos.view(n, d), sin.view(n, d), h, keys, values, start)
    assert torch.equal(qkv[:, : h + kvh], want_qk)
    assert torch.equal(qkv[:, h + kvh :], v_before)  # v is stored, not rotated
    assert torch.equal(keys, want_k) and torch.equal(values, want_v)  # other slots untouched


def test_rope_store_rejects_bad_arguments():
    qkv, cos, sin = _rows(2, 4, 2, 8, seed=1)
    keys = values = torch.zeros(2, 8, 8).bfloat16()
    c, s = cos.view(2, 8), sin.view(2, 8)
    cases = [
        (lambda: attention_kernel.rope_store(qkv, c, s, 3, keys, values, 0), "qkv: expected q_heads"),
        (lambda: attention_kernel.rope_store(qkv, c, s, 4, keys, values, 7), "start"),
        (lambda: attention_kernel.rope_store(qkv, c[:1], s, 4, keys, values, 0), "cos: expected shape"),
        (lambda: attention_kernel.rope_store(qkv.float(), c, s, 4, keys, values, 0), "qkv: expected dtype bfloat16"),
        (lambda: attention_kernel.rope_store(qkv, c, s, 4, keys[:, :, :4], values, 0), "keys: expected shape"),
        (lambda: attention_kernel.rope_store(qkv[:, :, :7], c[:, :7], s[:, :7], 4, keys, values, 0), "qkv"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


def test_add_rms_norm_is_the_add_then_the_norm():
    g = torch.Generator().manual_seed(3)
    x = (torch.randn(5, 1536, generator=g) * 2).bfloat16()
    delta = (torch.randn(5, 1536, generator=g) * 1e-2).bfloat16()  # small: the sum rounds
    w = torch.randn(1536, generator=g).bfloat16()
    total, normed = norm.add_rms_norm_bf16(x, delta, w, 1e-6)
    assert torch.equal(total, x + delta)
    assert torch.equal(normed, norm.rms_norm_bf16(x + delta, w, 1e-6))
    with pytest.raises(ValueError, match="delta: expected shape"):
        norm.add_rms_norm_bf16(x, delta[:4], w, 1e-6)
    with pytest.raises(ValueError, match="out: must not be"):
        norm.core().add_rms_norm_bf16(x, delta, w, 1e-6, x, x)
    fp32 = norm_model.RMSNorm(w.float(), 1e-6).add_and_norm(x.float(), delta.float())  # the torch formula
    assert torch.equal(fp32[0], x.float() + delta.float())


def test_attention_reads_q_heads_at_a_row_stride():
    qkv, _, _ = _rows(4, 6, 2, 64, seed=5)
    g = torch.Generator().manual_seed(6)
    keys, values = torch.randn(2, 20, 64, generator=g).bfloat16(), torch.randn(2, 20, 64, generator=g).bfloat16()
    q = qkv[:, :6]
    assert not q.is_contiguous()
    assert torch.equal(attention_kernel.causal_attention(q, keys, values, 9),
                       attention_kernel.causal_attention(q.contiguous(), keys, values, 9))


_EDGES = [-200.0, -100.0, -90.0, -88.75, -88.5, -88.0, -87.5, -87.25, -50.0, -3.0, -1e-30, -0.0, 0.0, 1e-30, 0.5,
          3.0, 50.0, 87.5, 88.5, 89.0, 100.0, 1e30, -1e30]


def _gate_up(m: int, i: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    gu = (torch.randn(m, 2 * i, generator=g) * 4).bfloat16()
    gu[0, : len(_EDGES)] = torch.tensor(_EDGES).bfloat16()  # exp's clamps and overflow: silu -> g, -> -0
    return gu


@pytest.mark.parametrize("i", [8960, 4864, 37])
def test_silu_mul_matches_torch_on_every_path(i, monkeypatch):
    gu = _gate_up(48, i, seed=i)
    want = F.silu(gu[:, :i]) * gu[:, i:]
    paths = {"avx512": ["avx512", "avx2", "scalar"], "avx2": ["avx2", "scalar"]}.get(isa(), ["scalar"])
    got = {}
    for p in paths:
        monkeypatch.setenv("SAGUARO_CPU_ISA", p)
        got[p] = swiglu.silu_mul_bf16(gu)
    for p in paths:
        assert torch.equal(got[p], got["scalar"]), p  # one exp, one order of operations: the same bits
    ulp = (got["scalar"].view(torch.int16).int() - want.view(torch.int16).int()).abs()
    # exp within ~1 fp32 ulp of torch's: a bf16-rounded silu differs by one step once in ~2^15 values
    assert ulp.max() <= 1 and (ulp > 0).float().mean() < 1e-3
    assert torch.equal(got["scalar"][0, : len(_EDGES)], want[0, : len(_EDGES)])


def test_silu_mul_keeps_leading_dims_and_rejects_bad_arguments():
    gu = _gate_up(6, 40, seed=1).view(2, 3, 80)
    out = swiglu.silu_mul_bf16(gu)
    assert out.shape == (2, 3, 40) and torch.equal(out.reshape(6, 40), swiglu.silu_mul_bf16(gu.reshape(6, 80)))
    assert swiglu.applies(gu) and not swiglu.applies(gu.float())
    with pytest.raises(ValueError, match="gate_up: needs"):
        swiglu.core().silu_mul_bf16(gu.reshape(6, 80)[:, :79].contiguous(), torch.empty(6, 39).bfloat16())
    with pytest.raises(ValueError, match="out: expected shape"):
        swiglu.core().silu_mul_bf16(gu.reshape(6, 80), torch.empty(6, 41).bfloat16())


def _unfused(monkeypatch) -> None:
    def plain(self, x, delta):
        total = x + delta
        return total, self(total)
    monkeypatch.setattr(attention_model.Attention, "_fused_rope", lambda *a: False)
    monkeypatch.setattr(norm_model.RMSNorm, "add_and_norm", plain)
    monkeypatch.setattr(swiglu, "applies", lambda *a: False)


def test_a_native_model_gives_the_same_bits_with_and_without_the_fused_steps(model_helpers, monkeypatch):
    """Decode, a verification chain, a tree step and a batch of two sequences (two attention groups)."""
    pytest.importorskip("transformers")
    adapter = model_helpers.native_from_hf(model_helpers.make_hf("qwen2-untied"), dtype=torch.bfloat16)
    calls = []
    fused_rope = attention_model.Attention._fused_rope
    monkeypatch.setattr(attention_model.Attention, "_fused_rope",
                        lambda self, *a: calls.append(fused_rope(self, *a)) or calls[-1])

    def run() -> list[torch.Tensor]:
        adapter.prefill([0, 1], [list(range(3, 30)), list(range(7, 19))])
        outs = [adapter.extend([0], [[5]]), adapter.extend([0], [[6, 7, 8, 9]]),
                adapter.extend([0, 1], [[10, 11], [12]]),
                torch.cat([adapter.tree_step([1, 1, 1], [13, 13, 13], [5 + d, 6 + d, 7 + d], d) for d in range(2)])]
        adapter.release(0)
        adapter.release(1)
        return outs

    fused = run()
    assert any(calls)  # the fused path really ran
    monkeypatch.undo()
    _unfused(monkeypatch)
    for a, b in zip(fused, run()):
        assert torch.equal(a, b)
