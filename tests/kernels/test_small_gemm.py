"""The batch-invariant bf16 small-M linear kernel: accuracy, bit-exact batch/thread/path invariance,
argument errors, and the model-level property it exists for (K+1-token verify == one-token decodes)."""
from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F

from saguaro.kernels.small_gemm import available, bf16_linear, pack_bf16
from saguaro.models.linear import Linear

PATHS = ["scalar"] + (["avx2"] if available() else [])


def _bf16(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g) * scale).to(torch.bfloat16)


def _reference(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    y = x.double() @ w.double().T
    return y + b.double() if b is not None else y


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("K,N", [(1, 1), (7, 5), (16, 9), (37, 13), (130, 67), (896, 131)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_matches_double_reference(path, K, N, with_bias):
    x, w = _bf16(6, K, seed=K), _bf16(N, K, seed=N + 1, scale=K ** -0.5)
    b = _bf16(N, seed=3) if with_bias else None
    ref = _reference(x, w, b)
    y32 = bf16_linear(x, w, b, out_dtype=torch.float32, path=path)
    # fp32 accumulation of K bf16 products (exact in fp32) rounds once per FMA and add: the error is
    # at most ~K * 2^-24 * sum|x_k w_k| (a loose a-priori bound; observed errors are far smaller)
    bound = (K + 4) * 2.0 ** -24 * (x.double().abs() @ w.double().abs().T) + 1e-30
    assert ((y32.double() - ref).abs() <= bound + (b.double().abs() * 2.0 ** -24 if b is not None else 0)).all()
    # the bf16 output is the round-to-nearest-even of exactly that fp32 result
    y16 = bf16_linear(x, w, b, path=path)
    assert torch.equal(y16, y32.to(torch.bfloat16))


@pytest.mark.parametrize("K", [8, 33, 896])
def test_paths_agree_bit_for_bit(K):
    if len(PATHS) < 2:
        pytest.skip("this CPU has no AVX2+FMA path to compare")
    x, w, b = _bf16(9, K, seed=1), _bf16(45, K, seed=2), _bf16(45, seed=3)
    for dtype in (torch.bfloat16, torch.float32):
        a = bf16_linear(x, w, b, out_dtype=dtype, path="avx2")
        s = bf16_linear(x, w, b, out_dtype=dtype, path="scalar")
        assert torch.equal(a.view(torch.int16) if dtype == torch.bfloat16 else a.view(torch.int32),
                           s.view(torch.int16) if dtype == torch.bfloat16 else s.view(torch.int32))


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.equal(a.view(torch.int16), b.view(torch.int16))


def test_rows_are_batch_and_thread_invariant():
    K, N = 200, 523
    w, b = _bf16(N, K, seed=5, scale=0.1), _bf16(N, seed=6)
    x = _bf16(33, K, seed=7)
    alone = [bf16_linear(x[i : i + 1], w, b, threads=1) for i in range(33)]
    for M in range(1, 34):
        for threads in (1, 2, 3):
            y = bf16_linear(x[:M], w, b, threads=threads)
            assert all(_same_bits(y[i : i + 1], alone[i]) for i in range(M)), (M, threads)
    # other rows' contents do not matter either
    noisy = x[:8].clone()
    noisy[1:] = _bf16(7, K, seed=8) * 1000
    assert _same_bits(bf16_linear(noisy, w, b)[:1], alone[0])


def test_invariance_check_can_fail():
    """The comparison above is not vacuous: one flipped bit is caught, and torch's own bf16 matmul
    (a different reduction per M on CPUs without bf16 matrix units) fails it."""
    K, N = 896, 256
    w, x = _bf16(N, K, seed=9, scale=0.05), _bf16(5, K, seed=10)
    y = bf16_linear(x, w)
    planted = y.clone()
    planted.view(torch.int16)[0, 17] ^= 1
    assert not _same_bits(planted[:1], bf16_linear(x[:1], w))
    t5, t1 = F.linear(x, w), F.linear(x[:1], w)
    if _same_bits(t5[:1], t1):
        pytest.skip("torch's bf16 matmul happens to be batch-invariant for this shape on this CPU")
    assert not _same_bits(t5[:1], t1)


@pytest.mark.parametrize("call,match", [
    (lambda x, w: bf16_linear(x.float(), w), "x: expected dtype torch.bfloat16"),
    (lambda x, w: bf16_linear(x, w.float()), "weight: expected dtype torch.bfloat16"),
    (lambda x, w: bf16_linear(x, w[:, :5]), r"weight: expected \[out_features, 8\]"),
    (lambda x, w: bf16_linear(x, w, torch.zeros(3, dtype=torch.bfloat16)), r"bias: expected shape \[4\]"),
    (lambda x, w: bf16_linear(x, w, out_dtype=torch.float16), "out_dtype"),
    (lambda x, w: bf16_linear(x, w, threads=0), "threads"),
    (lambda x, w: bf16_linear(x, w, path="neon"), "path"),
    (lambda x, w: bf16_linear(x, w[None]), "weight: expected shape"),
])
def test_bad_arguments_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call(_bf16(2, 8, seed=0), _bf16(4, 8, seed=1))


def test_core_validates_directly():
    from saguaro import _core

    x, w = _bf16(2, 8, seed=0), _bf16(4, 8, seed=1)
    out = torch.empty(2, 4, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="weight: expected shape"):
        _core.small_gemm_bf16(x, _bf16(4, 6, seed=1), None, out)
    with pytest.raises(ValueError, match="out: expected shape"):
        _core.small_gemm_bf16(x, w, None, torch.empty(3, 4, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="out: expected dtype"):
        _core.small_gemm_bf16(x, w, None, torch.empty(2, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="x: must be C-contiguous"):
        _core.small_gemm_bf16(_bf16(8, 2, seed=0).T, w, None, out)
    with pytest.raises(ValueError, match="x: expected dtype bfloat16"):
        _core.small_gemm_bf16(x.float(), w, None, out)
    with pytest.raises(ValueError, match="x: expected a tensor"):
        _core.small_gemm_bf16(None, w, None, out)


def test_linear_uses_kernel_and_escape_hatch(monkeypatch):
    w, b, x = _bf16(12, 8, seed=1), _bf16(12, seed=2), _bf16(3, 8, seed=3)
    lin = Linear(w, b)
    expect = bf16_linear(x, w, b) if available() else F.linear(x, w, b)
    assert _same_bits(lin(x), expect)
    assert torch.equal(lin.forward_float(x), bf16_linear(x, w, b, out_dtype=torch.float32)
                       if available() else F.linear(x, w, b).float())
    monkeypatch.setenv("SAGUARO_CPU_LINEAR", "torch")
    assert _same_bits(lin(x), F.linear(x, w, b))


def _verify_and_decodes(helpers, family: str) -> tuple[torch.Tensor, torch.Tensor]:
    pytest.importorskip("transformers")
    adapter = helpers.native_from_hf(helpers.make_hf(family), dtype=torch.bfloat16)
    prompt = torch.randint(0, 97, (11,), generator=torch.Generator().manual_seed(1)).tolist()
    new = [5, 17, 42, 8, 90]
    adapter.prefill([1, 2], [prompt, prompt])
    verify = adapter.extend([1], [new])
    decodes = torch.cat([adapter.extend([2], [[t]]) for t in new])
    assert verify.dtype == torch.float32 and verify.shape == decodes.shape == (5, 97)
    return verify, decodes


needs_kernel = pytest.mark.skipif(not available(), reason="the bf16 kernel only replaces torch on AVX2+FMA CPUs")


@needs_kernel
@pytest.mark.parametrize("family", ["qwen2-untied", "qwen3", "llama3-scaled"])
def test_bf16_model_extend_equals_successive_decodes(family, model_helpers):
    """The property that makes bf16 speculative decoding exact, on the model as it is: a verify
    forward of 5 tokens gives the bits of 5 one-token decodes (attention runs row by row)."""
    verify, decodes = _verify_and_decodes(model_helpers, family)
    assert torch.equal(verify, decodes), (verify - decodes).abs().max()


@needs_kernel
def test_multi_query_attention_would_break_invariance(monkeypatch, model_helpers):
    """The check above can fail: with one multi-query SDPA call per group (SDPA instead of the kernel,
    ROW_BY_ROW_MAX = 0) the verify rows differ from the decodes on this CPU."""
    from saguaro.models import attention

    monkeypatch.setenv("SAGUARO_CPU_ATTENTION", "torch")
    monkeypatch.setattr(attention, "ROW_BY_ROW_MAX", 0)
    verify, decodes = _verify_and_decodes(model_helpers, "qwen2-untied")
    assert not torch.equal(verify, decodes)


@needs_kernel
@pytest.mark.parametrize("sdpa", [False, True])
def test_a_long_bf16_prefill_runs_the_kernel_unmasked(sdpa, monkeypatch, model_helpers):
    """A prefill of more rows than ROW_BY_ROW_MAX runs the attention kernel too (every kernel thread;
    masked SDPA ran on one torch thread): its last row has the bits of a token-by-token decode. With
    SDPA (SAGUARO_CPU_ATTENTION=torch) it runs one masked multi-query call, which does not."""
    from saguaro.models import attention

    pytest.importorskip("transformers")
    if sdpa:
        monkeypatch.setenv("SAGUARO_CPU_ATTENTION", "torch")
    adapter = model_helpers.native_from_hf(model_helpers.make_hf("qwen2-untied"), dtype=torch.bfloat16)
    prompt = torch.randint(0, 97, (attention.ROW_BY_ROW_MAX + 9,), generator=torch.Generator().manual_seed(3)).tolist()
    whole = adapter.prefill([1], [prompt])[-1]
    adapter.prefill([2], [prompt[:1]])
    for t in prompt[1:]:
        step = adapter.extend([2], [[t]])[-1]
    assert torch.equal(whole, step) != sdpa, (whole - step).abs().max()


@needs_kernel
def test_packed_weight_rows_unpack_and_linear_keeps_one_copy():
    w, x = _bf16(37, 24, seed=4), _bf16(5, 24, seed=5)
    packed = pack_bf16(w)
    assert packed.data.shape == (3, 24, 16) and packed.shape == w.shape
    assert torch.equal(packed.unpack(), w)
    ids = torch.tensor([[0, 36], [17, 8]])
    assert torch.equal(packed.rows(ids), w[ids])
    assert _same_bits(bf16_linear(x, packed), bf16_linear(x, w))
    lin = Linear(w)
    assert lin.packed is not None and lin._weight is None  # the plain weight is not kept
    assert torch.equal(lin.rows(ids), w[ids]) and lin._weight is None
    assert torch.equal(lin.weight, w)  # unpacked on demand


@needs_kernel
def test_tied_head_serves_the_embedding_lookup(model_helpers):
    pytest.importorskip("transformers")
    adapter = model_helpers.native_from_hf(model_helpers.make_hf("llama-tied"), dtype=torch.bfloat16)
    model = adapter.model
    assert model._embed is None and model.head.packed is not None  # one copy of the tied matrix
    tokens = torch.tensor([3, 50, 96])
    assert torch.equal(model.head.rows(tokens), model.embed[tokens])
