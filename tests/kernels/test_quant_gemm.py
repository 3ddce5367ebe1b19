"""saguaro.kernels.quant (the GEMM on GGUF blocks) against gguf-py: its dequantization bit for bit, its
products within the int8-activation error of the fp64 product with gguf's dequantized weights, every
path (AVX-512, AVX2, scalar) giving the same bits, rows independent of each other, and its errors.

Random weights: gguf.quants.quantize for Q8_0 / Q5_0 (the types gguf-py can quantize); for Q4_K / Q6_K
random bytes with sane fp16 scales written over the d / dmin fields (every bit pattern of the quants and
6-bit scales is a valid block).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")
from saguaro.kernels import quant  # noqa: E402

pytestmark = pytest.mark.skipif(not quant.available(), reason="the extension lacks the quantized kernels")

TYPES = ["Q4_K", "Q6_K", "Q8_0", "Q5_0"]
PATHS = [p for p in ("scalar", "avx2", "avx512")
         if ("scalar", "avx2", "avx512").index(p) <= ("scalar", "avx2", "avx512").index(quant.supported_isa())]


def random_blocks(kind: str, n: int, k: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    qt = gguf.GGMLQuantizationType[kind]
    if kind in ("Q8_0", "Q5_0"):
        return gguf.quants.quantize((rng.standard_normal((n, k)) * 0.05).astype(np.float32), qt)
    _, block_bytes = gguf.GGML_QUANT_SIZES[qt]
    b = rng.integers(0, 256, size=(n, quant.row_bytes(kind, k)), dtype=np.uint8)
    blk = b.reshape(n, -1, block_bytes)

    def halves() -> np.ndarray:
        return rng.uniform(0.001, 0.02, size=blk.shape[:2]).astype(np.float16).view(np.uint8).reshape(*blk.shape[:2], 2)

    if kind == "Q6_K":
        blk[..., 208:210] = halves()
    else:
        blk[..., 0:2], blk[..., 2:4] = halves(), halves()
    return b


def k_for(kind: str) -> int:
    # 896 = 28 blocks of 32: three groups of eight and a partial one (the 0.5B draft's hidden size)
    return 512 if kind in ("Q4_K", "Q6_K") else 896


@pytest.mark.parametrize("kind", TYPES)
def test_dequantize_is_ggufs(kind):
    k = k_for(kind)
    b = random_blocks(kind, 40, k)
    want = gguf.quants.dequantize(b, gguf.GGMLQuantizationType[kind])
    got = quant.dequantize(torch.from_numpy(b), kind, 40, k).numpy()
    assert np.array_equal(got, want)


@pytest.mark.parametrize("kind", TYPES)
@pytest.mark.parametrize("m", [1, 5, 16])
def test_product_is_within_the_activation_error(kind, m):
    k, n = k_for(kind), 72
    b = random_blocks(kind, n, k, seed=m)
    w = torch.from_numpy(gguf.quants.dequantize(b, gguf.GGMLQuantizationType[kind])).double()
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(m))
    y = quant.gemm(x, torch.from_numpy(b), kind, n).double()
    exact = x.double() @ w.T
    # each int8 activation is off by at most half a step (max|x| / 254 of its block): |error| <= Σ|w| * that
    bound = w.abs().sum(1)[None, :] * (x.abs().amax(1, keepdim=True).double() / 254) * 1.01 + 1e-5
    err = (y - exact).abs()
    assert bool((err <= bound).all()), float((err / bound).max())
    assert float(err.max()) > 0  # activations really are quantized (a float kernel would be exact here)


@pytest.mark.parametrize("kind", TYPES)
def test_every_path_gives_the_same_bits_and_rows_are_independent(kind, monkeypatch):
    k, n = k_for(kind), 200
    b = torch.from_numpy(random_blocks(kind, n, k, seed=3))
    x = torch.randn(16, k, generator=torch.Generator().manual_seed(7))
    ref = quant.gemm(x, b, kind, n, path="scalar", threads=1)
    for path in PATHS:
        assert torch.equal(quant.gemm(x, b, kind, n, path=path, threads=2), ref), path
        monkeypatch.setenv("SAGUARO_CPU_ISA", path)  # the environment switch reaches path="auto"
        assert quant.isa() == path
        assert torch.equal(quant.gemm(x, b, kind, n), ref), path
        monkeypatch.delenv("SAGUARO_CPU_ISA")
        for r in (0, 4, 15):
            assert torch.equal(quant.gemm(x[r:r + 1], b, kind, n, path=path), ref[r:r + 1]), (path, r)


def test_output_slices_and_errors():
    k = 256
    b = torch.from_numpy(random_blocks("Q4_K", 64, k))
    x = torch.randn(3, k)
    out = torch.zeros(3, 100)
    quant.gemm(x, b, "Q4_K", 64, out=out[:, 20:84])
    assert torch.equal(out[:, 20:84], quant.gemm(x, b, "Q4_K", 64))
    assert float(out[:, :20].abs().sum()) == 0 and float(out[:, 84:].abs().sum()) == 0
    with pytest.raises(ValueError, match="blocks: expected"):
        quant.gemm(x, b[:10], "Q4_K", 64)
    with pytest.raises(ValueError, match="multiple of 256"):
        quant.gemm(torch.randn(1, 100), b, "Q4_K", 64)
    with pytest.raises(ValueError, match="not one of"):
        quant.gemm(x, b, "Q4_0", 64)
    with pytest.raises(ValueError, match="out"):
        quant.gemm(x, b, "Q4_K", 64, out=torch.zeros(3, 64, dtype=torch.float64))
    with pytest.raises(ValueError, match="'sse'"):
        quant.gemm(x, b, "Q4_K", 64, path="sse")


@pytest.mark.skipif(not quant.q4k16_supported(16, 256), reason="the interleaved Q4_K kernels need AVX2")
@pytest.mark.parametrize("m", [1, 5, 16])
def test_interleaved_q4k_gives_the_gguf_blocks_bits(m):
    n, k = 96, 768
    b = torch.from_numpy(random_blocks("Q4_K", n, k, seed=11))
    packed = quant.q4k16_repack(b, n, k, threads=2)
    assert packed.numel() == n // 16 * (k // 256) * 2368
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(m))
    ref = quant.gemm(x, b, "Q4_K", n, path="scalar")
    for path in PATHS:
        assert torch.equal(quant.q4k16_gemm(x, packed, n, path=path), ref), path
    with pytest.raises(ValueError, match="contiguous uint8"):
        quant.q4k16_gemm(x, packed[:-1], n)


@pytest.mark.skipif(not quant.q6k16_supported(16, 256), reason="the interleaved Q6_K kernels need AVX2")
@pytest.mark.parametrize("m", [1, 2, 4, 5, 6, 16])
def test_interleaved_q6k_gives_the_gguf_blocks_bits(m):
    """Every row tile (1-5 rows; 6 = 3 + 3, 16 = 4 x 4) on every path gives the scalar GGUF-block bits."""
    n, k = 96, 768
    b = torch.from_numpy(random_blocks("Q6_K", n, k, seed=13))
    packed = quant.q6k16_repack(b, n, k, threads=2)
    assert packed.numel() == n // 16 * (k // 256) * 3392
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(m))
    ref = quant.gemm(x, b, "Q6_K", n, path="scalar")
    for path in PATHS:
        assert torch.equal(quant.q6k16_gemm(x, packed, n, path=path), ref), path
        assert torch.equal(quant.q6k16_gemm(x, packed, n, path=path, threads=1), ref), path
    with pytest.raises(ValueError, match="contiguous uint8"):
        quant.q6k16_gemm(x, packed[:-1], n)
    with pytest.raises(ValueError, match="multiple of 16"):
        quant.q6k16_repack(b[: 40], 40, k)


@pytest.mark.skipif(not quant.b16_supported("Q5_0", 16, 32), reason="the interleaved kernels need AVX2")
@pytest.mark.parametrize("kind", ["Q5_0", "Q8_0"])
@pytest.mark.parametrize("m", [1, 3, 5, 16, 17])
@pytest.mark.parametrize("amx", ["1", "0"])
def test_interleaved_q5_q8_give_the_gguf_blocks_bits(kind, m, amx, monkeypatch):
    """16 and 17 rows run the AMX tiles where this CPU has them ($SAGUARO_CPU_AMX=1), else VNNI."""
    monkeypatch.setenv("SAGUARO_CPU_AMX", amx)
    n, k = 48, 896  # 28 blocks: three groups of eight and a partial one
    b = torch.from_numpy(random_blocks(kind, n, k, seed=12))
    packed = quant.b16_repack(b, kind, n, k)
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(m))
    ref = quant.gemm(x, b, kind, n, path="scalar")
    for path in PATHS:
        assert torch.equal(quant.b16_gemm(x, packed, kind, n, path=path), ref), path
    assert quant.amx() == (amx == "1" and quant.core().cpu_amx_supported())
