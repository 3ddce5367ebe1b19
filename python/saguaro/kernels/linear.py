"""The batch-invariant bf16 small-M linear kernel (``saguaro._core.small_gemm_bf16``).

``y = x @ weight.T + bias`` for bf16 CPU tensors, accumulated in fp32 with one fixed reduction order
per output element, so a row's result is bit-identical whatever else is in the batch and whatever
the thread count. That makes a K+1-row verification (or a tree step) of a bf16 model produce exactly
the logits of one-row decode steps, and on CPUs without bf16 matrix instructions (AVX2 only) an M-row
call for small M costs about one decode step, where torch's bf16 matmul costs about M of them.
"""
from __future__ import annotations

import functools

import torch

__all__ = ["available", "bf16_linear"]

_PATHS = ("auto", "scalar", "avx2")


def _core():
    from saguaro import _core

    return _core


@functools.lru_cache(maxsize=None)
def available() -> bool:
    """True when the fast (AVX2+FMA) path runs on this CPU; the portable scalar path always exists
    but is slower than torch, so callers should only prefer the kernel when this is True."""
    try:
        return bool(_core().small_gemm_has_avx2())
    except (ImportError, AttributeError):
        return False


def bf16_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
                out_dtype: torch.dtype = torch.bfloat16, threads: int | None = None,
                path: str = "auto") -> torch.Tensor:
    """``x @ weight.T (+ bias)`` with x [..., K], weight [N, K], bias [N] bf16 CPU tensors.

    Returns [..., N] in out_dtype (bfloat16: round-to-nearest-even of the fp32 result; float32: the
    fp32 result itself). threads None means ``torch.get_num_threads()``; threads split the output
    columns only, so the bits never depend on it. path "scalar" / "avx2" forces a code path (tests);
    both give the same bits. Bad arguments raise ValueError saying what to fix.
    """
    for name, t in (("x", x), ("weight", weight), ("bias", bias)):
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
    if weight.dim() != 2:
        raise ValueError(f"weight: expected shape [out_features, in_features], got {list(weight.shape)}")
    if out_dtype not in (torch.bfloat16, torch.float32):
        raise ValueError(f"out_dtype: expected torch.bfloat16 or torch.float32, got {out_dtype}")
    if path not in _PATHS:
        raise ValueError(f"path: expected one of {_PATHS}, got {path!r}")
    if threads is None:
        threads = torch.get_num_threads()
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
    _core().small_gemm_bf16(x2.contiguous(), weight.contiguous(), None if bias is None else bias.contiguous(),
                            out, threads, path)
    return out.reshape(*lead, weight.shape[0])
