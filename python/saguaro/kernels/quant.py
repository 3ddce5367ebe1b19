"""Matrix products on GGUF-quantized weights in their own block formats (``saguaro._core.quant_gemm``).

``y = x @ W.T`` with x float32 [M, K] and W the raw bytes of a GGUF tensor (Q4_K, Q6_K, Q5_0 or Q8_0,
n rows of K values). Activations are quantized to int8 per block inside the kernel (as llama.cpp does),
so the inner products are integer dot products: AVX-512 VNNI where the CPU has it, AVX2 otherwise, and a
portable scalar path. All paths, thread counts and row counts give the same bits, and each output row
depends only on its own input row, so a K+1-row verification reproduces one-row decodes exactly. The
environment variable SAGUARO_CPU_ISA=avx2|scalar (read at each call) forces a lower path.
"""
from __future__ import annotations

import functools

import torch

from saguaro.kernels.threads import kernel_threads
from saguaro.kernels.weight_memory import weight_buffer

__all__ = ["GGML_TYPES", "available", "b16_gemm", "b16_repack", "b16_supported", "dequantize", "gemm", "isa", "q4k16_gemm", "q4k16_repack", "q4k16_supported",
           "q6k16_gemm", "q6k16_repack", "q6k16_supported",
           "row_bytes", "supported_isa"]

# GGML type ids of the formats the kernels run
GGML_TYPES = {"Q5_0": 6, "Q8_0": 8, "Q4_K": 12, "Q6_K": 14}


def core():
    """The compiled extension (imported on first use)."""
    from saguaro import _core

    return _core


@functools.lru_cache(maxsize=None)
def available() -> bool:
    """True when the extension has the quantized kernels (any CPU: the scalar path always exists)."""
    try:
        return hasattr(core(), "quant_gemm")
    except ImportError:
        return False


def supported_isa() -> str:
    """The CPU's best path: 'avx512', 'avx2' or 'scalar'."""
    return str(core().cpu_isa_supported())


def isa() -> str:
    """The path a call runs now (the CPU's best, lowered by $SAGUARO_CPU_ISA)."""
    return str(core().cpu_isa_selected())


def amx() -> bool:
    """True when the calls run now use AMX-INT8 tiles where they have them (the Q5_0 / Q8_0 interleaved
    kernel at 12 rows and more): the CPU and OS allow it, the AVX-512 path is selected and
    $SAGUARO_CPU_AMX is not 0."""
    return bool(getattr(core(), "cpu_amx_selected", lambda: False)())


def path_name() -> str:
    """The path a call runs now, as the benchmark pages record it: :func:`isa`, plus "+amx" with tiles."""
    return isa() + ("+amx" if amx() else "")


def type_id(ggml_type: int | str) -> int:
    """The GGML type id of a type name ('Q4_K', ...) or id; ValueError for other types."""
    if isinstance(ggml_type, str):
        if ggml_type not in GGML_TYPES:
            raise ValueError(f"ggml_type: {ggml_type!r} is not one of {', '.join(GGML_TYPES)}")
        return GGML_TYPES[ggml_type]
    tid = int(ggml_type)
    if tid not in GGML_TYPES.values():
        raise ValueError(f"ggml_type: id {tid} is not one of {GGML_TYPES}")
    return tid


def row_bytes(ggml_type: int | str, k: int) -> int:
    """Bytes of one weight row of k values (ValueError when k is not a multiple of the block)."""
    return int(core().quant_row_bytes(type_id(ggml_type), int(k)))


def gemm(x: torch.Tensor, blocks: torch.Tensor, ggml_type: int | str, n: int, k: int | None = None, *,
         out: torch.Tensor | None = None, threads: int | None = None, path: str = "auto") -> torch.Tensor:
    """``x @ W.T`` as float32 [M, n] for x [M, K] (converted to float32) and W the GGUF blocks of n rows.

    out: a float32 [M, n] destination (a column slice of a wider matrix is fine). threads None means
    ``saguaro.kernels.threads.kernel_threads()``. path 'auto', 'avx512', 'avx2' or 'scalar' (same bits). k, when given,
    must equal x's last dimension.
    """
    x2 = x.reshape(-1, x.shape[-1]).float().contiguous()
    if k is not None and int(k) != x2.shape[1]:
        raise ValueError(f"x: expected {k} columns, got {x2.shape[1]}")
    if out is None:
        out = torch.empty((x2.shape[0], int(n)), dtype=torch.float32)
    core().quant_gemm(x2, blocks, type_id(ggml_type), int(n), out, int(threads or kernel_threads()), path)
    return out


def q4k16_supported(n: int, k: int) -> bool:
    """True when an [n, k] Q4_K matrix can be repacked (n % 16 == 0, k % 256 == 0) and the interleaved
    kernel is this CPU's fast path (AVX-512 VNNI or AVX2); on the scalar path the GGUF blocks run faster."""
    return available() and hasattr(core(), "q4k16_gemm") and n % 16 == 0 and k % 256 == 0 and n > 0 \
        and supported_isa() in ("avx512", "avx2")


def q4k16_repack(blocks: torch.Tensor, n: int, k: int, threads: int | None = None) -> torch.Tensor:
    """n rows of GGUF Q4_K blocks repacked into the 16-column interleaved layout (a new uint8 tensor)."""
    out = weight_buffer((int(core().q4k16_packed_bytes(int(n), int(k))),), torch.uint8)
    core().q4k16_repack(blocks, int(n), int(k), out, int(threads or kernel_threads()))
    return out


def q4k16_gemm(x: torch.Tensor, packed: torch.Tensor, n: int, *, out: torch.Tensor | None = None,
               threads: int | None = None, path: str = "auto") -> torch.Tensor:
    """``x @ W.T`` (float32 [M, n]) with W repacked by :func:`q4k16_repack`: the bits :func:`gemm` gives on
    the GGUF blocks."""
    x2 = x.reshape(-1, x.shape[-1]).float().contiguous()
    if out is None:
        out = torch.empty((x2.shape[0], int(n)), dtype=torch.float32)
    core().q4k16_gemm(x2, packed, int(n), out, int(threads or kernel_threads()), path)
    return out


def q6k16_supported(n: int, k: int) -> bool:
    """True when an [n, k] Q6_K matrix can be repacked (n % 16 == 0, k % 256 == 0) and the interleaved
    kernel is this CPU's fast path (AVX-512 VNNI or AVX2)."""
    return available() and hasattr(core(), "q6k16_gemm") and n % 16 == 0 and k % 256 == 0 and n > 0 \
        and supported_isa() in ("avx512", "avx2")


def q6k16_repack(blocks: torch.Tensor, n: int, k: int, threads: int | None = None) -> torch.Tensor:
    """n rows of GGUF Q6_K blocks repacked into the 16-column interleaved layout (a new uint8 tensor)."""
    out = weight_buffer((int(core().q6k16_packed_bytes(int(n), int(k))),), torch.uint8)
    core().q6k16_repack(blocks, int(n), int(k), out, int(threads or kernel_threads()))
    return out


def q6k16_gemm(x: torch.Tensor, packed: torch.Tensor, n: int, *, out: torch.Tensor | None = None,
               threads: int | None = None, path: str = "auto") -> torch.Tensor:
    """``x @ W.T`` (float32 [M, n]) with W repacked by :func:`q6k16_repack`: the bits :func:`gemm` gives on
    the GGUF blocks."""
    x2 = x.reshape(-1, x.shape[-1]).float().contiguous()
    if out is None:
        out = torch.empty((x2.shape[0], int(n)), dtype=torch.float32)
    core().q6k16_gemm(x2, packed, int(n), out, int(threads or kernel_threads()), path)
    return out


def b16_supported(ggml_type: int | str, n: int, k: int) -> bool:
    """True when an [n, k] Q5_0 / Q8_0 matrix can be repacked (n % 16 == 0) and the interleaved kernel is
    this CPU's fast path (AVX-512 VNNI or AVX2)."""
    return (available() and hasattr(core(), "quant_b16_gemm") and type_id(ggml_type) in (6, 8) and n > 0
            and n % 16 == 0 and k % 32 == 0 and supported_isa() in ("avx512", "avx2"))


def b16_repack(blocks: torch.Tensor, ggml_type: int | str, n: int, k: int, threads: int | None = None) -> torch.Tensor:
    """n rows of GGUF Q5_0 / Q8_0 blocks repacked into the 16-column interleaved layout (a new uint8 tensor)."""
    tid = type_id(ggml_type)
    out = weight_buffer((int(core().quant_b16_packed_bytes(tid, int(n), int(k))),), torch.uint8)
    core().quant_b16_repack(blocks, tid, int(n), int(k), out, int(threads or kernel_threads()))
    return out


def b16_gemm(x: torch.Tensor, packed: torch.Tensor, ggml_type: int | str, n: int, *,
             out: torch.Tensor | None = None, threads: int | None = None, path: str = "auto") -> torch.Tensor:
    """``x @ W.T`` (float32 [M, n]) with W repacked by :func:`b16_repack`: the GGUF blocks' bits."""
    x2 = x.reshape(-1, x.shape[-1]).float().contiguous()
    if out is None:
        out = torch.empty((x2.shape[0], int(n)), dtype=torch.float32)
    core().quant_b16_gemm(x2, packed, type_id(ggml_type), int(n), out, int(threads or kernel_threads()), path)
    return out


def dequantize(blocks: torch.Tensor, ggml_type: int | str, rows: int, k: int) -> torch.Tensor:
    """The fp32 weights [rows, k] of `rows` rows of GGUF blocks."""
    out = torch.empty((int(rows), int(k)), dtype=torch.float32)
    core().quant_dequantize(blocks, type_id(ggml_type), int(rows), int(k), out)
    return out
