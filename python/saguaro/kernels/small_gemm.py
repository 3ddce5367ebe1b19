"""The batch-invariant bf16 small-M linear kernel (``saguaro._core.small_gemm_bf16``).

``y = x @ weight.T + bias`` for bf16 CPU tensors, accumulated in fp32 as one fma chain over k in
order per output element, so a row's result is bit-identical whatever else is in the batch and
whatever the thread count. That makes a K+1-row verification (or a tree step) of a bf16 model produce
exactly the logits of one-row decode steps. Weights are used in a packed panel layout
(:func:`pack_bf16`, once per model): a decode streams each panel sequentially near the core's memory
bandwidth, and a few rows run near its FMA peak (on AVX2 CPUs, where torch's bf16 matmul costs about
one decode step per row).
"""
from __future__ import annotations

import functools

import torch

from saguaro.kernels.threads import kernel_threads
from saguaro.kernels.weight_memory import weight_buffer

__all__ = ["PackedBf16", "available", "bf16_linear", "pack_bf16"]

_PATHS = ("auto", "scalar", "avx2")


def core():
    """The compiled extension (imported on first use)."""
    from saguaro import _core

    return _core


@functools.lru_cache(maxsize=None)
def available() -> bool:
    """True when the fast (AVX2+FMA) path runs on this CPU; the portable scalar path always exists
    but is slower than torch, so callers should only prefer the kernel when this is True."""
    try:
        return bool(core().small_gemm_has_avx2())
    except (ImportError, AttributeError):
        return False


class PackedBf16:
    """A bf16 weight [out_features, in_features] in the kernel's panel layout (``data`` is
    [ceil(out / 16), in, 16]: per k, 16 columns in one 32-byte row). Made by :func:`pack_bf16`."""

    def __init__(self, data: torch.Tensor, out_features: int) -> None:
        self.data = data
        self.out_features = int(out_features)
        self.in_features = int(data.shape[1])

    @property
    def shape(self) -> torch.Size:
        """The unpacked weight's shape, [out_features, in_features]."""
        return torch.Size([self.out_features, self.in_features])

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Weight rows ``W[ids]`` (an embedding lookup from a tied output head), shape [*ids.shape, in]."""
        flat = ids.reshape(-1).long()
        # panel word j holds column j in its low half and column 8 + j in its high half
        view = self.data.view(self.data.shape[0], self.in_features, 8, 2)
        out = view[flat // 16, :, flat % 8, (flat % 16) // 8]
        return out.reshape(*ids.shape, self.in_features)

    def unpack(self) -> torch.Tensor:
        """The weight [out_features, in_features] as an ordinary (new) tensor."""
        w = self.data.view(self.data.shape[0], self.in_features, 8, 2).permute(0, 3, 2, 1)
        return w.reshape(-1, self.in_features)[: self.out_features].contiguous()


def pack_bf16(weight: torch.Tensor, threads: int | None = None) -> PackedBf16:
    """Pack a bf16 CPU weight [out, in] for :func:`bf16_linear` (a new tensor of the same size, rounded
    up to 16 rows; drop the original to keep one copy)."""
    if not isinstance(weight, torch.Tensor) or weight.dtype != torch.bfloat16 or weight.device.type != "cpu":
        raise ValueError("weight: expected a bfloat16 CPU tensor")
    if weight.dim() != 2 or weight.shape[0] < 1 or weight.shape[1] < 1:
        raise ValueError(f"weight: expected shape [out_features, in_features], got {list(weight.shape)}")
    n, k = weight.shape
    data = weight_buffer(((n + 15) // 16, k, 16), torch.bfloat16)
    core().small_gemm_pack_bf16(weight.contiguous(), data, threads or kernel_threads())
    return PackedBf16(data, n)


def bf16_linear(x: torch.Tensor, weight: torch.Tensor | PackedBf16, bias: torch.Tensor | None = None, *,
                out_dtype: torch.dtype = torch.bfloat16, threads: int | None = None,
                path: str = "auto") -> torch.Tensor:
    """``x @ weight.T (+ bias)`` with x [..., K], weight [N, K] (a tensor, packed on every call, or a
    :class:`PackedBf16`), bias [N] bf16 CPU tensors.

    Returns [..., N] in out_dtype (bfloat16: round-to-nearest-even of the fp32 result; float32: the
    fp32 result itself). threads None means ``kernel_threads()`` (saguaro.kernels.threads); threads split the output
    columns only, so the bits never depend on it. path "scalar" / "avx2" forces a code path (tests);
    both give the same bits. Bad arguments raise ValueError saying what to fix.
    """
    packed = weight if isinstance(weight, PackedBf16) else None
    for name, t in (("x", x), ("weight", packed.data if packed is not None else weight), ("bias", bias)):
        if t is None and name == "bias":
            continue
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
        if t.dtype != torch.bfloat16:
            raise ValueError(f"{name}: expected dtype torch.bfloat16, got {t.dtype}")
        if t.device.type != "cpu":
            raise ValueError(f"{name}: must be a CPU tensor, got device {t.device}")
    if x.dim() < 1:
        raise ValueError("x: expected at least one dimension [..., in_features]")
    if packed is None and weight.dim() != 2:
        raise ValueError(f"weight: expected shape [out_features, in_features], got {list(weight.shape)}")
    if out_dtype not in (torch.bfloat16, torch.float32):
        raise ValueError(f"out_dtype: expected torch.bfloat16 or torch.float32, got {out_dtype}")
    if path not in _PATHS:
        raise ValueError(f"path: expected one of {_PATHS}, got {path!r}")
    if threads is None:
        threads = kernel_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads: expected an integer >= 1, got {threads!r}")
    K = x.shape[-1]
    if weight.shape[1] != K:
        raise ValueError(f"weight: expected [out_features, {K}] to match x's last dimension, got {list(weight.shape)}")
    if bias is not None and list(bias.shape) != [weight.shape[0]]:
        raise ValueError(f"bias: expected shape [{weight.shape[0]}], got {list(bias.shape)}")
    lead = x.shape[:-1]
    x2 = x.reshape(-1, K)
    out = torch.empty((x2.shape[0], weight.shape[0]), dtype=out_dtype)
    if x2.shape[0] == 0 or weight.shape[0] == 0:
        return out.reshape(*lead, weight.shape[0])
    if K == 0:
        raise ValueError("x: in_features must be >= 1")
    b = None if bias is None else bias.contiguous()
    if packed is not None:
        core().small_gemm_bf16_packed(x2.contiguous(), packed.data, packed.out_features, b, out, threads, path)
    else:
        core().small_gemm_bf16(x2.contiguous(), weight.contiguous(), b, out, threads, path)
    return out.reshape(*lead, weight.shape[0])
