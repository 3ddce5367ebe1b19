"""saguaro kernels: target processing, chain verification, fan-out and branch sampling.

Thin validated wrappers over the C++ CPU twins / CUDA kernels in ``saguaro._core``
(docs/contracts.md §1-§2). Logits are float32 torch tensors; per-row parameters are a scalar, a
list with one value per row, or a 1-D tensor, so one batch can mix greedy and sampled rows. CPU
tensors run the CPU twins; CUDA tensors run the CUDA kernels on the current stream when the build
has them. Every bad argument raises ValueError saying what to fix.
"""
from __future__ import annotations

from typing import Sequence, Union

import torch

from saguaro.kernels._args import Purpose, RowParam, as_fanout, as_rows, as_seed_rows, check_logits
from saguaro.kernels.small_gemm import bf16_linear

__all__ = [
    "Purpose",
    "bf16_linear",
    "RowParam",
    "cuda_available",
    "keyed_uniform",
    "process_probs",
    "sample_rows",
    "verify_chain",
    "fanout_candidates",
]


def _core():
    from saguaro import _core  # imported lazily: the reference and the argument helpers work without it

    return _core


def cuda_available() -> bool:
    """True when this build has the CUDA kernels and torch sees a CUDA device."""
    return bool(_core().kernels_have_cuda) and torch.cuda.is_available()


def _stream_for(t: torch.Tensor) -> int:
    if not t.is_cuda:
        return 0
    if not _core().kernels_have_cuda:
        raise ValueError("a CUDA tensor was given but this build of saguaro has no CUDA kernels "
                         "(rebuild with -DSAGUARO_CUDA=ON, or pass CPU tensors)")
    return int(torch.cuda.current_stream(t.device).cuda_stream)


def _device_of(t: torch.Tensor):
    return torch.cuda.device(t.device) if t.is_cuda else _NullContext()


class _NullContext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _check_same_device(main: torch.Tensor, name: str, other) -> None:
    if not isinstance(other, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(other).__name__}")
    if other.device != main.device:
        raise ValueError(f"{name}: on {other.device}, but the logits are on {main.device}")


def keyed_uniform(seed: int, stream: int, position: int, purpose: int) -> float:
    """Philox4x32-10 keyed uniform in [0, 1) (docs/contracts.md §1); seed and stream in [0, 2**64)."""
    seeds, streams = as_seed_rows(1, seed, stream)
    rows = as_rows(1, positions=position)
    if isinstance(purpose, bool) or not isinstance(purpose, int) or not 0 <= int(purpose) < 2**32:
        raise ValueError(f"purpose: expected an integer in [0, 2**32), got {purpose!r}")
    out = torch.empty(1, dtype=torch.float64)
    _core().keyed_uniform_many(seeds, streams, rows["positions"], torch.tensor([int(purpose)]), out)
    return float(out[0])


def process_probs(logits: torch.Tensor, *, temperature: RowParam = 1.0, top_k: RowParam = 0, top_p: RowParam = 1.0,
                  saguaro_c: RowParam = 1.0, saguaro_topn: RowParam = 0) -> torch.Tensor:
    """Processed probabilities [R, V] float32 of logits [R, V]: temperature -> softmax -> top-k -> top-p
    -> Saguaro (saguaro_c scales the saguaro_topn most likely tokens) -> renormalise; temperature 0 is
    a one-hot at the argmax."""
    check_logits(logits, "logits", 2)
    R, V = logits.shape
    rows = as_rows(R, temperature=temperature, top_k=top_k, top_p=top_p, saguaro_c=saguaro_c, saguaro_topn=saguaro_topn)
    out = torch.empty((R, V), dtype=torch.float32, device=logits.device)
    with _device_of(logits):
        _core().process_probs(logits, rows["temperature"], rows["top_k"], rows["top_p"], rows["saguaro_c"],
                              rows["saguaro_topn"], out, _stream_for(logits))
    return out


def sample_rows(logits: torch.Tensor, *, temperature: RowParam = 1.0, top_k: RowParam = 0, top_p: RowParam = 1.0,
                saguaro_c: RowParam = 1.0, saguaro_topn: RowParam = 0, seed: RowParam = 0, stream: RowParam = 0,
                positions: RowParam = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Draft-side sampling: process each row and draw one token with keyed_uniform(seed, stream,
    positions[n], DRAFT). Returns (tokens [N] int32, probs [N, V] float32 = the q the verifier reads)."""
    check_logits(logits, "logits", 2)
    N, V = logits.shape
    rows = as_rows(N, temperature=temperature, top_k=top_k, top_p=top_p, saguaro_c=saguaro_c,
                   saguaro_topn=saguaro_topn, positions=positions)
    seeds, streams = as_seed_rows(N, seed, stream)
    probs = torch.empty((N, V), dtype=torch.float32, device=logits.device)
    tokens = torch.empty((N,), dtype=torch.int32, device=logits.device)
    with _device_of(logits):
        _core().sample_rows(logits, rows["temperature"], rows["top_k"], rows["top_p"], rows["saguaro_c"],
                            rows["saguaro_topn"], seeds, streams, rows["positions"], probs, tokens,
                            _stream_for(logits))
    return tokens, probs


def verify_chain(target_logits: torch.Tensor, draft_tokens: torch.Tensor, q: torch.Tensor | None = None, *,
                 num_draft: RowParam | None = None, deterministic: RowParam = False, temperature: RowParam = 1.0,
                 top_k: RowParam = 0, top_p: RowParam = 1.0, seed: RowParam = 0, stream: RowParam = 0,
                 positions: RowParam = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Verify a chain speculation. target_logits [B, K+1, V] float32, draft_tokens [B, K] int32,
    q [B, K, V] float32 (the exact rows the drafts were sampled from; None when every row is greedy
    or deterministic), num_draft (default K), deterministic (q = one-hot of the proposal), the
    target's temperature / top_k / top_p, seed / stream and positions (absolute position of x1).
    Returns (accepted [B] int32, bonus [B] int32)."""
    check_logits(target_logits, "target_logits", 3)
    B, K1, V = target_logits.shape
    if not isinstance(draft_tokens, torch.Tensor):
        raise ValueError(f"draft_tokens: expected a torch.Tensor, got {type(draft_tokens).__name__}")
    _check_same_device(target_logits, "draft_tokens", draft_tokens)
    if q is not None:
        _check_same_device(target_logits, "q", q)
    rows = as_rows(B, num_draft=K1 - 1 if num_draft is None else num_draft, deterministic=deterministic,
                   temperature=temperature, top_k=top_k, top_p=top_p, positions=positions)
    seeds, streams = as_seed_rows(B, seed, stream)
    accepted = torch.empty((B,), dtype=torch.int32, device=target_logits.device)
    bonus = torch.empty((B,), dtype=torch.int32, device=target_logits.device)
    with _device_of(target_logits):
        _core().verify_chain(target_logits, draft_tokens, q, rows["num_draft"], rows["deterministic"],
                             rows["temperature"], rows["top_k"], rows["top_p"], seeds, streams, rows["positions"],
                             accepted, bonus, _stream_for(target_logits))
    return accepted, bonus


def fanout_candidates(draft_logits: torch.Tensor, drafted: torch.Tensor, fanout: Union[Sequence[int], torch.Tensor],
                      fmax: int | None = None) -> torch.Tensor:
    """Fork candidates [B, K+1, Fmax] int32: for each position j the top-F_j tokens of L_j by logit
    (ties: lower id), excluding drafted[b, j] for j < K, -1 padded. fanout: K+1 values for every row or
    [B, K+1]; fmax defaults to the largest F_j."""
    check_logits(draft_logits, "draft_logits", 3)
    B, K1, V = draft_logits.shape
    if not isinstance(drafted, torch.Tensor):
        raise ValueError(f"drafted: expected a torch.Tensor, got {type(drafted).__name__}")
    _check_same_device(draft_logits, "drafted", drafted)
    f = as_fanout(fanout, B, K1)
    largest = int(f.max()) if f.numel() else 0
    if fmax is None:
        fmax = largest
    if isinstance(fmax, bool) or not isinstance(fmax, int) or fmax < largest or fmax > 2**31 - 1:
        raise ValueError(f"fmax: expected an integer >= the largest fan-out ({largest}), got {fmax!r}")
    out = torch.empty((B, K1, fmax), dtype=torch.int32, device=draft_logits.device)
    with _device_of(draft_logits):
        _core().fanout_candidates(draft_logits, drafted, f, out, _stream_for(draft_logits))
    return out
