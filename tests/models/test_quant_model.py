"""Models on GGUF blocks (load(..., quantized=True)): a tiny Q8_0 / Q5_0 GGUF model's logits against the
same GGUF dequantized to fp32, its weights memory-mapped rather than copied, and greedy SD / SSD equal to
AR token for token on the quantized target and draft."""
from __future__ import annotations

import pytest
import torch

from conftest import make_hf
from gguf_writer import write_gguf

import saguaro.models as M
from saguaro.kernels import quant
from saguaro.models.quant_linear import QuantLinear, QuantWeight

pytestmark = pytest.mark.skipif(not quant.available(), reason="the extension lacks the quantized kernels")

# q / k in Q5_0 and v in Q8_0 (as the real 0.5B draft): a fused qkv projection of two formats
MIXED = {"attn_v": "Q8_0", "*": "Q5_0"}


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    d = tmp_path_factory.mktemp("quant")
    return write_gguf(make_hf("qwen2-untied"), d / "tiny-q.gguf", quant=MIXED)


@pytest.fixture(scope="module")
def tiny_tied_gguf(tmp_path_factory):
    d = tmp_path_factory.mktemp("quant-tied")
    return write_gguf(make_hf("qwen2-tied"), d / "tiny-tied-q.gguf", quant="Q8_0")


@pytest.mark.parametrize("tied", [False, True])
def test_quantized_model_keeps_blocks_and_matches_the_dequantized_model(tiny_gguf, tiny_tied_gguf, tied):
    path = tiny_tied_gguf if tied else tiny_gguf
    q = M.load(path, quantized=True, dtype=torch.float32)
    f = M.load(path, dtype=torch.float32)  # the same GGUF dequantized to fp32
    qkv = q.adapter.model.layers[0].attention.qkv
    assert isinstance(qkv, QuantLinear)
    assert [s.ggml_type for s in qkv.qweight.segments] == ([8, 8, 8] if tied else [6, 6, 8])
    assert isinstance(q.adapter.model.head, QuantLinear)
    # tied: the embedding is looked up from the head's blocks (one copy); untied: its own blocks
    assert (q.adapter.model._embed is None) if tied else isinstance(q.adapter.model._embed, QuantWeight)
    tokens = [3, 17, 42, 5, 88, 60, 21, 9, 1]
    a, b = q.adapter.prefill([0], [tokens]), f.adapter.prefill([0], [tokens])
    err = (a - b).abs().max().item()
    # int8 activation blocks (error <= 1/254 of each block's max per value) through two layers
    assert 0 < err < 0.03 * b.abs().max().item(), err
    assert int(a.argmax()) == int(b.argmax())
    ta = q.adapter.tree_step([0, 0], [9, 9], [4, 7], 0)
    tb = f.adapter.tree_step([0, 0], [9, 9], [4, 7], 0)
    assert (ta - tb).abs().max().item() < 0.03 * tb.abs().max().item()


def test_rows_of_a_verification_equal_one_row_decodes(tiny_gguf):
    """Batch invariance, the basis of exact speculation: a 4-token extend gives the bits of 4 decodes."""
    q1 = M.load(tiny_gguf, quantized=True, dtype=torch.float32).adapter
    q2 = M.load(tiny_gguf, quantized=True, dtype=torch.float32).adapter
    prompt, more = [3, 17, 42, 5], [88, 60, 21, 9]
    q1.prefill([0], [prompt])
    q2.prefill([0], [prompt])
    many = q1.extend([0], [more]).reshape(-1, q1.model.config.vocab_size)
    ones = torch.cat([q2.extend([0], [[t]]).reshape(-1, q2.model.config.vocab_size)[-1:] for t in more])
    assert torch.equal(many[-len(more):], ones)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("mode", ["sd", "ssd"])
def test_greedy_speculation_equals_ar_on_the_quantized_path(tiny_gguf, mode, dtype):
    """bf16: single-sequence decodes and verifications run the C++ decoder chain, batches and tree steps
    the Python layers (saguaro.models.decoder_chain): the runtime mixes both."""
    from saguaro.runtime import RequestParams
    from saguaro.speculation_config import SpeculationConfig
    from saguaro.runtime import Runtime

    target = M.load(tiny_gguf, quantized=True, dtype=dtype).adapter
    draft = M.load(tiny_gguf, quantized=True, dtype=dtype).adapter
    from saguaro.kernels import attention as attention_kernel
    assert (target.model.chain is not None) == (dtype == torch.bfloat16 and attention_kernel.available())
    g = torch.Generator().manual_seed(5)
    prompts = [torch.randint(0, 95, (n,), generator=g).tolist() for n in (9, 6)]
    outs = {}
    for m, d in (("ar", None), (mode, draft)):
        with Runtime(target, d, SpeculationConfig(mode=m, k=3, backup="jit")) as rt:
            ids = [rt.submit(p, RequestParams(max_new_tokens=20)) for p in prompts]
            outs[m] = ([rt.result(rid, timeout=120).new_tokens for rid in ids], rt.metrics())
    assert outs[mode][0] == outs["ar"][0]
    assert sum(outs[mode][1]["accepted_per_position"]) > 0  # the draft (the same model) was used


def test_engine_quantized_loads_both_models_on_blocks_and_keeps_the_tokens(tiny_gguf):
    """Engine(quantized=True) (and the CLI's --quantized) load the pair on GGUF blocks; SD == AR."""
    import saguaro

    sp = saguaro.SamplingParams(max_new_tokens=12)
    prompt = [3, 17, 42, 5, 9]
    with saguaro.Engine(str(tiny_gguf), mode="ar", quantized=True, dtype=torch.float32) as ar:
        assert isinstance(ar.target.adapter.model.layers[0].attention.qkv, QuantLinear)
        [want] = ar.generate(prompt, sp)
    with saguaro.Engine(str(tiny_gguf), str(tiny_gguf), mode="sd", k=3, quantized=True, dtype=torch.float32) as sd:
        assert isinstance(sd.draft.adapter.model.layers[0].attention.qkv, QuantLinear)
        [got] = sd.generate(prompt, sp)
    assert got.token_ids == want.token_ids
    loaded = M.load(str(tiny_gguf), dtype=torch.float32)
    with pytest.raises(ValueError, match="quantized=True applies when the engine loads the target itself"):
        saguaro.Engine(loaded, mode="ar", quantized=True)


@pytest.mark.parametrize("kinds", [("Q4_K", "Q4_K"), ("Q6_K", "Q6_K"), ("Q4_K", "Q6_K")])
def test_repacked_kquant_projection_has_the_gguf_blocks_bits(monkeypatch, kinds):
    """QuantLinear's interleaved Q4_K / Q6_K copies (run by the AVX-512 and AVX2 paths) give the GGUF blocks' bits,
    also for mixed segments (the 1.5B's q/k/v: Q4_K q, k and a Q6_K v), with a lowered path
    (SAGUARO_CPU_ISA) and for a pruned selection of rows."""
    import numpy as np

    rng = np.random.default_rng(4)
    k, rows = 512, [32, 16]
    segs = []
    for n, kind in zip(rows, kinds):
        block = 144 if kind == "Q4_K" else 210
        b = rng.integers(0, 256, size=(n, quant.row_bytes(kind, k)), dtype=np.uint8)
        blk = b.reshape(n, -1, block)
        halves = rng.uniform(0.001, 0.02, size=(*blk.shape[:2], 2)).astype(np.float16).view(np.uint8)
        if kind == "Q4_K":
            blk[..., 0:4] = halves
        else:
            blk[..., 208:210] = halves[..., :2]
        segs.append(QuantWeight.from_blocks(torch.from_numpy(b), kind, n, k))
    w = QuantWeight.cat(segs)
    fast, plain = QuantLinear(w, repack=True), QuantLinear(w, repack=False)
    assert all(p is None for p in plain.repacked)
    assert all(p is not None for p in fast.repacked) == quant.q4k16_supported(16, k)
    x = torch.randn(5, k)
    want = plain.forward_float(x)
    assert torch.equal(fast.forward_float(x), want)
    assert torch.equal(fast.forward_float(x[:1]), want[:1])  # a decode: the same row's bits
    monkeypatch.setenv("SAGUARO_CPU_ISA", "avx2")
    assert torch.equal(fast.forward_float(x), want)
    monkeypatch.delenv("SAGUARO_CPU_ISA")
    ids = torch.tensor([0, 5, 31, 32, 40])
    assert torch.equal(fast.select_rows(ids).forward_float(x), want[:, ids])


@pytest.mark.parametrize("repack", [True, False])
def test_a_bf16_projection_has_the_bits_of_the_fp32_call_rounded(repack):
    """bf16 in, bf16 out in one extension call: the bits of x.float() -> GGUF-block kernel -> + bias ->
    .to(bfloat16), the three torch operators it replaces; also for the fp32 logits (forward_float) of a
    bf16 input, and with non-finite outputs rounded as torch rounds them."""
    import numpy as np

    rng = np.random.default_rng(7)
    n, k = 48, 512
    b = rng.integers(0, 256, size=(n, quant.row_bytes("Q4_K", k)), dtype=np.uint8)
    blk = b.reshape(n, -1, 144)
    blk[..., 0:4] = rng.uniform(0.001, 0.02, size=(*blk.shape[:2], 2)).astype(np.float16).view(np.uint8)
    w = QuantWeight.from_blocks(torch.from_numpy(b), "Q4_K", n, k)
    bias = torch.randn(n)
    bias[3] = float("inf")
    bias[4] = float("nan")
    lin = QuantLinear(w, bias, repack=repack)
    for m in (1, 5, 16):
        x = (torch.randn(2, m, k) * 3).bfloat16()
        fp32 = quant.gemm(x.reshape(-1, k).float(), w.segments[0].blocks, "Q4_K", n, k) + bias
        got = lin(x)
        assert got.dtype == torch.bfloat16 and got.shape == (2, m, n)
        want = fp32.to(torch.bfloat16)
        finite = ~want.isnan()
        assert torch.equal(got.reshape(-1, n).isnan(), ~finite)  # NaN payloads are not compared
        assert torch.equal(got.reshape(-1, n)[finite].view(torch.int16), want[finite].view(torch.int16))
        assert torch.allclose(lin.forward_float(x).reshape(-1, n), fp32, rtol=0, atol=0, equal_nan=True)
        half = lin(x.half())  # other dtypes: through fp32, back to theirs
        assert half.dtype == torch.float16


def test_repacked_q5_model_has_the_gguf_blocks_bits(tmp_path, monkeypatch):
    """A Q5_0 model (hidden 64, intermediate 96: every matrix has a multiple of 16 rows) gives the same
    logits with and without the interleaved copies."""
    path = write_gguf(make_hf("qwen2-untied"), tmp_path / "q5.gguf", quant="Q5_0")
    fast = M.load(path, quantized=True, dtype=torch.float32)
    lin = fast.adapter.model.layers[0].mlp
    assert any(p is not None for v in vars(lin).values() if isinstance(v, QuantLinear) for p in v.repacked) \
        == quant.b16_supported("Q5_0", 16, 64)
    monkeypatch.setenv("SAGUARO_QUANT_REPACK", "0")
    plain = M.load(path, quantized=True, dtype=torch.float32)
    assert all(p is None for p in plain.adapter.model.layers[0].mlp.gate_up.repacked)
    tokens = [3, 17, 42, 5, 88]
    assert torch.equal(fast.adapter.prefill([0], [tokens]), plain.adapter.prefill([0], [tokens]))


@pytest.mark.slow
def test_real_draft_quantized_agrees_with_its_bf16_conversion():
    """The 0.5B draft (Q5_0, Q8_0, Q4_K, Q6_K blocks) on the quantized path: same greedy tokens as the
    bf16 conversion of the same file on a short code prompt."""
    from saguaro.models.presets import DEFAULT_DRAFT

    try:
        q = M.load(DEFAULT_DRAFT, quantized=True)
        b = M.load(DEFAULT_DRAFT)
    except ImportError as e:
        pytest.skip(str(e))
    ids = q.tokenizer.encode("def fibonacci(n):\n    ")
    outs = []
    for lm in (q, b):
        a = lm.adapter
        toks = [int(a.prefill([0], [ids])[-1].argmax())]
        for _ in range(11):
            toks.append(int(a.extend([0], [[toks[-1]]])[-1].argmax()))
        outs.append(toks)
    assert outs[0] == outs[1]
    assert {s.ggml_type for s in q.adapter.model.head.qweight.segments} == {8}  # the GGUF's Q8_0 head (in chunks)


def test_quantized_load_errors(tiny_gguf, tmp_path):
    with pytest.raises(ValueError, match="or a .gguf file"):
        M.load(tmp_path, quantized=True)
    with pytest.raises(ValueError, match="CPU only"):
        M.load(tiny_gguf, quantized=True, device="meta")
    with pytest.raises(ValueError, match="quantized=True loads"):
        M.load(lambda t: t, quantized=True)


def test_file_pages_are_released_once_a_repacked_copy_exists():
    """The load peak: a segment's `release` (its mapped file pages) runs when QuantLinear made a repacked
    copy of it, and never when the kernels still read the GGUF blocks."""
    import numpy as np

    rng = np.random.default_rng(5)
    k, released = 512, []
    segs = []
    for n, kind in ((32, "Q4_K"), (8, "Q8_0")):  # 8 rows: no x16 copy, the kernels read its blocks
        b = rng.integers(0, 256, size=(n, quant.row_bytes(kind, k)), dtype=np.uint8)
        segs.append(QuantWeight.from_blocks(torch.from_numpy(b), kind, n, k,
                                            release=lambda kind=kind: released.append(kind)))
    w = QuantWeight.cat(segs)
    QuantLinear(w, repack=False)
    assert released == []
    fast = QuantLinear(w, repack=True)
    assert released == (["Q4_K"] if fast.repacked[0] is not None else [])


def test_released_gguf_pages_read_back_the_same_blocks(tiny_gguf):
    """madvise(DONTNEED) on the read-only map is transparent: the blocks read the same bytes afterwards."""
    from saguaro.models.gguf_file import GGUFFile

    g = GGUFFile(tiny_gguf)
    weights = dict(g.quantized_tensors(g.config()))
    segs = [s for w in weights.values() if isinstance(w, QuantWeight) for s in w.segments if s.release]
    assert segs, "the tiny GGUF's unpermuted matrices carry a page releaser"
    before = [s.blocks.clone() for s in segs]
    for s in segs:
        s.release()
    assert all(torch.equal(s.blocks, b) for s, b in zip(segs, before))


def test_a_large_mapped_matrix_is_repacked_in_chunks_with_the_same_bits(tiny_gguf, monkeypatch):
    """Chunking (GGUFFile._chunked: row segments of at most _CHUNK_BYTES, each releasing its own pages)
    changes no bit: a tiny chunk size splits every matrix of a multiple of 16 rows into 16-row segments;
    the model's logits and a pruned selection of rows equal the unchunked model's."""
    from saguaro.models import gguf_file

    def weights(loaded):
        return [m.qweight for m in vars(loaded.adapter.model.layers[0].mlp).values() if isinstance(m, QuantLinear)]

    whole = M.load(str(tiny_gguf), dtype=torch.float32, quantized=True)
    monkeypatch.setattr(gguf_file, "_CHUNK_BYTES", 1)
    chunked = M.load(str(tiny_gguf), dtype=torch.float32, quantized=True)
    pairs = [(a, b) for a, b in zip(weights(whole), weights(chunked)) if len(b.segments) > len(a.segments)]
    assert pairs, "some MLP matrix of the tiny model is split"
    for a, b in pairs:
        assert all(s.rows == 16 for s in b.segments[:-1]) and b.out_features == a.out_features
        keep = torch.tensor([0, 3, 17, a.out_features - 2, a.out_features - 1])
        picked = b.select_rows(keep)
        assert len(picked.segments) == 1 and torch.equal(picked.dequantize(), a.select_rows(keep).dequantize())
    tokens = list(range(1, 13))
    assert torch.equal(chunked.adapter.prefill([0], [tokens]), whole.adapter.prefill([0], [tokens]))
