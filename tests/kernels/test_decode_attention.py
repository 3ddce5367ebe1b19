"""The batch-invariant causal attention kernel: accuracy against SDPA in float64, bit-exact row /
thread / path invariance, argument errors, and the attention switch of the native model."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from saguaro.kernels.attention import available, branch_attention, causal_attention

pytestmark = pytest.mark.skipif(not available(), reason="the attention kernel replaces SDPA on AVX2+FMA CPUs only")


def _case(n: int = 5, h: int = 6, kvh: int = 2, d: int = 64, start: int = 11, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    cap = start + n + 4
    q = torch.randn(n, h, d, generator=g).to(torch.bfloat16)
    k = torch.randn(kvh, cap, d, generator=g).to(torch.bfloat16)
    v = torch.randn(kvh, cap, d, generator=g).to(torch.bfloat16)
    return q, k, v, start


@pytest.mark.parametrize("d", [8, 12, 64, 128])
def test_matches_sdpa_in_float64(d):
    q, k, v, start = _case(d=d)
    out = causal_attention(q, k, v, start)
    for i in range(q.shape[0]):
        ref = F.scaled_dot_product_attention(q[i : i + 1].double().transpose(0, 1).unsqueeze(0),
                                             k[:, : start + i + 1].double().unsqueeze(0),
                                             v[:, : start + i + 1].double().unsqueeze(0), enable_gqa=True)
        ref = ref[0].transpose(0, 1)[0]
        assert torch.allclose(out[i].double(), ref, rtol=8e-3, atol=1e-3), (out[i].double() - ref).abs().max()


def test_rows_are_batch_thread_and_path_invariant():
    q, k, v, start = _case(n=9, seed=1)
    alone = torch.cat([causal_attention(q[i : i + 1], k, v, start + i, threads=1) for i in range(9)])
    for threads in (1, 2):
        for path in ("auto", "scalar"):
            got = causal_attention(q, k, v, start, threads=threads, path=path)
            assert torch.equal(got.view(torch.int16), alone.view(torch.int16)), (threads, path)


def test_invariance_check_can_fail():
    q, k, v, start = _case(n=2, seed=2)
    before = causal_attention(q, k, v, start)
    k[0, 0, 0] += 0.5  # a key both rows see
    assert not torch.equal(causal_attention(q, k, v, start), before)


@pytest.mark.parametrize("call,match", [
    (lambda q, k, v: causal_attention(q.float(), k, v, 0), "q: expected a 3-d bfloat16"),
    (lambda q, k, v: causal_attention(q, k[:, :, :5], v, 0), "keys: expected shape"),
    (lambda q, k, v: causal_attention(q, k[:1], v, 0), "values: expected shape"),
    (lambda q, k, v: causal_attention(q, k, v, 10_000), "start"),
    (lambda q, k, v: causal_attention(q[:, :5], k[:, :], v, 0, threads=0), "threads"),
    (lambda q, k, v: causal_attention(q, k, v, 0, path="neon"), "path"),
])
def test_bad_arguments_raise_value_error(call, match):
    q, k, v, _ = _case()
    with pytest.raises(ValueError, match=match):
        call(q, k, v)


def test_branch_attention_matches_masked_sdpa_in_float64():
    """Tree-step rows: a trunk prefix of its own length plus the branch's own strided slots."""
    g = torch.Generator().manual_seed(3)
    m, depth, start, h, kvh, d = 4, 2, 20, 6, 2, 64
    cap = start + (depth + 1) * m + 2
    q = torch.randn(m, h, d, generator=g).to(torch.bfloat16)
    k = torch.randn(kvh, cap, d, generator=g).to(torch.bfloat16)
    v = torch.randn(kvh, cap, d, generator=g).to(torch.bfloat16)
    prefix = torch.tensor([20, 19, 18, 20])
    own_first = start + torch.arange(m)
    out = branch_attention(q, k, v, prefix, own_first, m, depth + 1)
    kv_len = start + (depth + 1) * m
    mask = torch.cat((torch.arange(start)[None, :] < prefix[:, None],
                      (torch.arange((depth + 1) * m) % m)[None, :] == torch.arange(m)[:, None]), dim=1)
    ref = F.scaled_dot_product_attention(q.double().transpose(0, 1).unsqueeze(0), k[:, :kv_len].double().unsqueeze(0),
                                         v[:, :kv_len].double().unsqueeze(0), attn_mask=mask, enable_gqa=True)
    ref = ref[0].transpose(0, 1)
    assert torch.allclose(out.double(), ref, rtol=8e-3, atol=1e-3), (out.double() - ref).abs().max()
    # a chain row is a branch with no own slots: the same bits as the causal kernel
    chain = branch_attention(q[:1], k, v, torch.tensor([start + 1]), torch.tensor([0]), 0, 0)
    assert torch.equal(chain, causal_attention(q[:1], k, v, start))
    with pytest.raises(ValueError, match="visible slots"):
        branch_attention(q, k, v, prefix, own_first + cap, m, depth + 1)


def _chain(adapter) -> torch.Tensor:
    return adapter.extend([0], [[5, 6, 7, 8]])


def _tree(adapter) -> torch.Tensor:
    return torch.cat([adapter.tree_step([0, 0, 0], [37, 36, 35], [5 + d, 6 + d, 7 + d], d) for d in range(3)])


@pytest.mark.parametrize("step", [_chain, _tree], ids=["chain", "tree"])
def test_native_model_uses_the_kernel_and_the_switch_keeps_logits_close(step, model_helpers, monkeypatch):
    """A bf16 native model's chain and tree attention run the kernel; SAGUARO_CPU_ATTENTION=torch (SDPA)
    gives logits within bf16 noise of it, and different bits (so the switch really switches)."""
    pytest.importorskip("transformers")
    adapter = model_helpers.native_from_hf(model_helpers.make_hf("qwen2-untied"), dtype=torch.bfloat16)

    def run() -> torch.Tensor:
        adapter.prefill([0], [list(range(3, 40))])
        out = step(adapter)
        adapter.release(0)
        return out

    kernel = run()
    monkeypatch.setenv("SAGUARO_CPU_ATTENTION", "torch")
    sdpa = run()
    assert (kernel - sdpa).abs().max().item() < 0.05 * max(1.0, sdpa.abs().max().item())
    assert not torch.equal(kernel, sdpa)
