"""Pure PyTorch / NumPy reference of the saguaro kernels, written from docs/contracts.md §1-§2.

Slow and simple on purpose (full sorts, Python loops over rows): the tests compare the C++ / CUDA
kernels against these functions. Same signatures as :mod:`saguaro.kernels`.
"""
from __future__ import annotations

from typing import Sequence, Union

import numpy as np
import torch

from saguaro.kernels._args import (
    Purpose,
    RowParam,
    as_fanout,
    as_rows,
    as_seed_rows,
    check_logits,
)

__all__ = [
    "Purpose",
    "philox4x32_10",
    "keyed_uniform",
    "process_probs",
    "sample_inverse_cdf",
    "sample_rows",
    "verify_chain",
    "fanout_candidates",
]

_M32 = np.uint64(0xFFFFFFFF)


def philox4x32_10(counter: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Philox4x32 with 10 rounds on arrays: counter [..., 4], key [..., 2] (uint32) -> [..., 4] uint32."""
    c = [np.asarray(counter[..., i], dtype=np.uint64) for i in range(4)]
    k0 = np.asarray(key[..., 0], dtype=np.uint64)
    k1 = np.asarray(key[..., 1], dtype=np.uint64)
    for _ in range(10):
        prod0 = np.uint64(0xD2511F53) * c[0]  # < 2^64: no overflow
        prod1 = np.uint64(0xCD9E8D57) * c[2]
        hi0, lo0 = prod0 >> np.uint64(32), prod0 & _M32
        hi1, lo1 = prod1 >> np.uint64(32), prod1 & _M32
        c = [(hi1 ^ c[1] ^ k0) & _M32, lo1, (hi0 ^ c[3] ^ k1) & _M32, lo0]
        k0 = (k0 + np.uint64(0x9E3779B9)) & _M32
        k1 = (k1 + np.uint64(0xBB67AE85)) & _M32
    return np.stack(c, axis=-1).astype(np.uint32)


def _uniform_np(seed, stream, position, purpose) -> np.ndarray:
    seed = np.asarray(seed, dtype=np.uint64)
    stream = np.asarray(stream, dtype=np.uint64)
    position = np.asarray(position, dtype=np.int64).astype(np.uint64)
    purpose = np.asarray(purpose, dtype=np.uint64)
    seed, stream, position, purpose = np.broadcast_arrays(seed, stream, position, purpose)
    counter = np.stack([position & _M32, position >> np.uint64(32), purpose & _M32, stream & _M32], axis=-1)
    key = np.stack([seed & _M32, seed >> np.uint64(32)], axis=-1)
    out = philox4x32_10(counter, key).astype(np.uint64)
    bits = ((out[..., 0] << np.uint64(32)) | out[..., 1]) >> np.uint64(11)
    return bits.astype(np.float64) * 2.0**-53


def keyed_uniform(seed, stream, position, purpose) -> Union[float, torch.Tensor]:
    """u in [0, 1) for (seed, stream, position, purpose); scalars give a float, arrays a float64 tensor."""
    if all(isinstance(v, (int, np.integer)) for v in (seed, stream, position, purpose)):
        return float(_uniform_np(int(seed) % 2**64, int(stream) % 2**64, position, int(purpose)))
    to_np = lambda v: v.numpy().view(np.uint64) if isinstance(v, torch.Tensor) else np.asarray(v).astype(np.uint64)
    u = _uniform_np(to_np(seed), to_np(stream), np.asarray(position, dtype=np.int64), to_np(purpose))
    return torch.from_numpy(np.ascontiguousarray(u))


def _check_rows(l: torch.Tensor, what: str, where) -> None:
    nan = torch.isnan(l).any(dim=-1)
    posinf = torch.isposinf(l).any(dim=-1)
    nofinite = ~torch.isfinite(l).any(dim=-1)
    for mask, why in ((nan, "contain NaN"), (posinf, "contain +inf"), (nofinite, "have no finite value")):
        if bool(mask.any()):
            raise ValueError(f"{what}: logits of {where(int(mask.nonzero()[0]))} {why}")


def _process(logits: torch.Tensor, t, k, p, c, n, saguaro: bool) -> torch.Tensor:
    """logits [R, V] float32 -> probabilities [R, V] float32 (float64 maths)."""
    R, V = logits.shape
    l = logits.double()
    finite = torch.isfinite(l)
    masked = torch.where(finite, l, torch.full_like(l, -torch.inf))
    m = masked.max(dim=1, keepdim=True).values
    temp = torch.as_tensor(t, dtype=torch.float64).view(R, 1)
    greedy = temp.view(-1) == 0
    safe_t = torch.where(temp == 0, torch.ones_like(temp), temp)
    w = torch.where(finite, torch.exp((l - m) / safe_t), torch.zeros_like(l))
    # rank of each token by (logit desc, id asc); -inf last
    order = torch.sort(masked, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(V).expand(R, V).contiguous())
    kk = torch.as_tensor(k, dtype=torch.int64).view(R, 1)
    w = torch.where((kk > 0) & (rank >= kk), torch.zeros_like(w), w)
    pp = torch.as_tensor(p, dtype=torch.float64).view(R)
    for r in range(R):
        if pp[r] >= 1.0:
            continue
        row = w[r]
        prob = row / row.sum()
        porder = torch.sort(prob, descending=True, stable=True).indices
        cum = torch.cumsum(prob[porder], dim=0)
        hit = (cum >= float(torch.tensor(pp[r].item(), dtype=torch.float32))).nonzero()
        if len(hit):
            keep = porder[: int(hit[0]) + 1]
            mask = torch.zeros(V, dtype=torch.bool)
            mask[keep] = True
            w[r] = torch.where(mask, row, torch.zeros_like(row))
    if saguaro:
        cc = torch.as_tensor(c, dtype=torch.float64).view(R, 1)
        nn = torch.as_tensor(n, dtype=torch.int64).view(R, 1)
        scaled = torch.where(rank < nn, w * cc, w)
        ok = scaled.sum(dim=1, keepdim=True) > 0
        w = torch.where(ok, scaled, w)
    out = (w / w.sum(dim=1, keepdim=True)).float()
    onehot = torch.zeros(R, V, dtype=torch.float32)
    if bool(greedy.any()):
        am = masked.argmax(dim=1)  # first maximal index: the lowest id on ties
        onehot[torch.arange(R), am] = 1.0
        out = torch.where(greedy.view(R, 1), onehot, out)
    return out


def process_probs(logits: torch.Tensor, *, temperature: RowParam = 1.0, top_k: RowParam = 0, top_p: RowParam = 1.0,
                  saguaro_c: RowParam = 1.0, saguaro_topn: RowParam = 0) -> torch.Tensor:
    """Reference of :func:`saguaro.kernels.process_probs`."""
    check_logits(logits, "logits", 2)
    R = logits.shape[0]
    rows = as_rows(R, temperature=temperature, top_k=top_k, top_p=top_p, saguaro_c=saguaro_c, saguaro_topn=saguaro_topn)
    _validate_ranges(rows, "process_probs")
    logits = logits.detach().cpu()
    _check_rows(logits, "process_probs", lambda r: f"row {r}")
    return _process(logits, rows["temperature"], rows["top_k"], rows["top_p"], rows["saguaro_c"],
                    rows["saguaro_topn"], True)


def _validate_ranges(rows: dict, what: str) -> None:
    t, k, p = rows["temperature"], rows["top_k"], rows["top_p"]
    if bool((~torch.isfinite(t) | (t < 0)).any()):
        raise ValueError(f"{what}: temperature must be finite and >= 0")
    if bool((k < 0).any()):
        raise ValueError(f"{what}: top_k must be >= 0")
    if bool(((p <= 0) | (p > 1) | torch.isnan(p)).any()):
        raise ValueError(f"{what}: top_p must be in (0, 1]")
    if "saguaro_c" in rows:
        c = rows["saguaro_c"]
        if bool(((c < 0) | (c > 1) | torch.isnan(c)).any()):
            raise ValueError(f"{what}: saguaro_c must be in [0, 1]")
        if bool((rows["saguaro_topn"] < 0).any()):
            raise ValueError(f"{what}: saguaro_topn must be >= 0")


def sample_inverse_cdf(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Rows [N, V] of non-negative float32 weights, u [N] float64 -> token ids [N] int32 (-1: no mass).

    cumsum in float64 over ids ascending; first id with weight > 0 and cumsum > u * total, else the
    last positive id.
    """
    p = np.asarray(probs.detach().cpu().numpy(), dtype=np.float32).astype(np.float64)
    if p.ndim == 1:
        p = p[None]
    u = np.asarray(u.numpy() if isinstance(u, torch.Tensor) else u, dtype=np.float64).reshape(-1)
    c = np.cumsum(p, axis=1)  # sequential, like the kernels
    total = c[:, -1]
    hit = (p > 0) & (c > (u * total)[:, None])
    pos = p > 0
    V = p.shape[1]
    first = np.where(hit.any(axis=1), hit.argmax(axis=1), -1)
    last = np.where(pos.any(axis=1), V - 1 - pos[:, ::-1].argmax(axis=1), -1)
    return torch.from_numpy(np.where(first >= 0, first, last).astype(np.int32))


def sample_rows(logits: torch.Tensor, *, temperature: RowParam = 1.0, top_k: RowParam = 0, top_p: RowParam = 1.0,
                saguaro_c: RowParam = 1.0, saguaro_topn: RowParam = 0, seed: RowParam = 0, stream: RowParam = 0,
                positions: RowParam = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference of :func:`saguaro.kernels.sample_rows`: (tokens [N] int32, probs [N, V] float32)."""
    check_logits(logits, "logits", 2)
    N = logits.shape[0]
    probs = process_probs(logits, temperature=temperature, top_k=top_k, top_p=top_p, saguaro_c=saguaro_c,
                          saguaro_topn=saguaro_topn)
    seeds, streams = as_seed_rows(N, seed, stream)
    pos = as_rows(N, positions=positions)["positions"]
    u = _uniform_np(seeds.numpy().view(np.uint64), streams.numpy().view(np.uint64), pos.numpy(), int(Purpose.DRAFT))
    return sample_inverse_cdf(probs, torch.from_numpy(u)), probs


def verify_chain(target_logits: torch.Tensor, draft_tokens: torch.Tensor, q: torch.Tensor | None = None, *,
                 num_draft: RowParam | None = None, deterministic: RowParam = False, temperature: RowParam = 1.0,
                 top_k: RowParam = 0, top_p: RowParam = 1.0, seed: RowParam = 0, stream: RowParam = 0,
                 positions: RowParam = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference of :func:`saguaro.kernels.verify_chain`: (accepted [B] int32, bonus [B] int32)."""
    check_logits(target_logits, "target_logits", 3)
    B, K1, V = target_logits.shape
    K = K1 - 1
    rows = as_rows(B, num_draft=K if num_draft is None else num_draft, deterministic=deterministic,
                   temperature=temperature, top_k=top_k, top_p=top_p, positions=positions)
    _validate_ranges(rows, "verify_chain")
    seeds, streams = as_seed_rows(B, seed, stream)
    seeds_u, streams_u = seeds.numpy().view(np.uint64), streams.numpy().view(np.uint64)
    accepted = torch.zeros(B, dtype=torch.int32)
    bonus = torch.zeros(B, dtype=torch.int32)
    l_all = target_logits.detach().cpu()
    x_all = draft_tokens.detach().cpu().to(torch.int64)
    for b in range(B):
        n = int(rows["num_draft"][b])
        if n < 0 or n > K:
            raise ValueError(f"verify_chain: num_draft[{b}] = {n} must be in [0, K={K}]")
        t = float(rows["temperature"][b])
        det = bool(rows["deterministic"][b])
        pos = int(rows["positions"][b])
        u = lambda i, purpose: float(_uniform_np(seeds_u[b], streams_u[b], pos + i, purpose))
        probs = lambda i: _process(l_all[b, i : i + 1], [t], [int(rows["top_k"][b])], [float(rows["top_p"][b])],
                                   [1.0], [0], False)[0]
        done = False
        for i in range(n):
            _check_rows(l_all[b, i : i + 1], "verify_chain", lambda r: f"row {b} position {i}")
            x = int(x_all[b, i])
            if t == 0.0:
                if x != int(probs(i).argmax()):
                    accepted[b], bonus[b] = i, int(probs(i).argmax())
                    done = True
                    break
                continue
            p = probs(i)
            ua = u(i, int(Purpose.ACCEPT))
            if det:
                if ua < float(p[x]):
                    continue
                res = p.clone()
                res[x] = 0.0
            else:
                qi = q[b, i].detach().cpu().float()
                if ua * float(qi[x]) < float(p[x]):
                    continue
                res = torch.clamp(p - qi, min=0.0)
            ur = torch.tensor([u(i, int(Purpose.RESIDUAL))], dtype=torch.float64)
            tok = int(sample_inverse_cdf(res[None], ur)[0])
            if tok < 0:
                tok = int(sample_inverse_cdf(p[None], ur)[0])
            accepted[b], bonus[b] = i, tok
            done = True
            break
        if not done:
            _check_rows(l_all[b, n : n + 1], "verify_chain", lambda r: f"row {b} position {n}")
            p = probs(n)
            ur = torch.tensor([u(n, int(Purpose.RESIDUAL))], dtype=torch.float64)
            accepted[b], bonus[b] = n, int(sample_inverse_cdf(p[None], ur)[0])
    return accepted, bonus


def fanout_candidates(draft_logits: torch.Tensor, drafted: torch.Tensor, fanout: Sequence[int] | torch.Tensor,
                      fmax: int | None = None) -> torch.Tensor:
    """Reference of :func:`saguaro.kernels.fanout_candidates`: tokens [B, K+1, Fmax] int32, -1 padded."""
    check_logits(draft_logits, "draft_logits", 3)
    B, K1, V = draft_logits.shape
    f = as_fanout(fanout, B, K1)
    Fmax = int(f.max()) if fmax is None else int(fmax)
    out = torch.full((B, K1, Fmax), -1, dtype=torch.int32)
    l_all = draft_logits.detach().cpu()
    for b in range(B):
        for j in range(K1):
            row = l_all[b, j]
            _check_rows(row[None], "fanout_candidates", lambda r: f"row {b} position {j}")
            order = torch.sort(row, descending=True, stable=True).indices
            excl = int(drafted[b, j]) if j < K1 - 1 else -1
            order = order[(order != excl) & (row[order] != -torch.inf)]
            cands = order[: int(f[b, j])]
            out[b, j, : len(cands)] = cands.to(torch.int32)
    return out
