"""Calibration at temperature > 0: acceptance and speculation-cache hit rates, for each Saguaro constant C,
from the two models' distributions on a text the target sampled (docs/algorithm.md §2.2, §4).

Greedy calibration only needs ranks (planner.curves_from_ranks). With sampling, what matters is the
distributions themselves: at a speculation position the draft samples x from q~ (q with its top-(F+1)
tokens scaled by C, renormalised; the runtime's ``saguaro_topn = F + 1``), the target accepts x with
probability min(1, p(x) / q~(x)), and after a rejection the bonus token comes from max(p - q~, 0). The
cache hits when that bonus is among the draft's top-F tokens other than x (the fork candidates). So, per
position, without sampling anything:

- acceptance     alpha = sum_x min(p(x), q~(x));
- rejected hit   P(bonus in candidates | rejection), with the drafted x averaged out: a rejected x has
  residual 0, so the candidates are the top-F when x is outside them and the top-(F+1) when inside;
- accepted hit   P(bonus in the top-F of q) with the bonus drawn from p (every draft accepted; C plays
  no part there, nothing was drafted at that position).

Positions come from the target's own sampled continuation: after accepted tokens the prefix is
distributed as the target's text, which is what these conditionals need.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from saguaro.benchmark import speed_model as sm

#: the Saguaro constants the planner tries (1 = plain speculative sampling)
C_GRID: tuple[float, ...] = (1.0, 0.9, 0.75, 0.5, 0.25)


@dataclass
class Distributions:
    """p and q rows [N, V] (float64, each row sums to 1) at N positions of a target-sampled text, with the
    columns ordered by the draft's ranking (q descending, lower id first on ties) so the top-F of q is
    the first F columns."""

    p: torch.Tensor
    q: torch.Tensor

    @classmethod
    def from_rows(cls, p_rows: torch.Tensor, q_rows: torch.Tensor) -> "Distributions":
        """p_rows, q_rows [N, V] probabilities in token-id order (the target's and the draft's)."""
        if p_rows.shape != q_rows.shape or p_rows.dim() != 2 or p_rows.shape[0] == 0:
            raise ValueError(f"p and q rows must be two non-empty [N, V] tensors of one shape, got "
                             f"{tuple(p_rows.shape)} and {tuple(q_rows.shape)}")
        p, q = p_rows.double(), q_rows.double()
        for name, t in (("p", p), ("q", q)):
            if not bool(torch.isfinite(t).all()) or bool((t < 0).any()):
                raise ValueError(f"{name} rows must be finite and non-negative")
            if not bool(torch.allclose(t.sum(1), torch.ones(t.shape[0], dtype=t.dtype), atol=1e-4)):
                raise ValueError(f"{name} rows must each sum to 1")
        order = torch.sort(q, dim=1, descending=True, stable=True).indices
        return cls(p=torch.gather(p, 1, order), q=torch.gather(q, 1, order))

    def __len__(self) -> int:
        return int(self.p.shape[0])


def scaled_q(q: torch.Tensor, c: float, topn: int) -> torch.Tensor:
    """q~: the first ``topn`` columns of rank-ordered q rows times c, renormalised (runtime Saguaro sampling)."""
    if not 0.0 <= c <= 1.0:
        raise ValueError(f"C must be in [0, 1], got {c}")
    if c == 1.0 or topn <= 0:
        return q
    w = q.clone()
    w[:, :topn] *= c
    z = w.sum(1, keepdim=True)
    return torch.where(z > 0, w / z.clamp_min(1e-300), q)


def acceptance(d: Distributions, c: float, topn: int) -> torch.Tensor:
    """alpha per position [N]: sum_x min(p, q~)."""
    return torch.minimum(d.p, scaled_q(d.q, c, topn)).sum(1)


def rejected_hits(d: Distributions, c: float, f: int) -> tuple[float, float]:
    """(expected hits, expected lookups) summed over positions, for fan-out F after a rejection.

    The draft sampled with topn = F + 1 (the runtime's rule). lookups = sum of rejection probabilities.
    """
    if f < 1:
        raise ValueError(f"fan-out F must be >= 1, got {f}")
    qt = scaled_q(d.q, c, f + 1)
    resid = (d.p - qt).clamp_min(0.0)            # bonus mass, unnormalised: its sum is the rejection probability
    rej_w = (qt - d.p).clamp_min(0.0)            # P(x drafted and rejected), per x
    rej = rej_w.sum(1)
    ok = rej > 1e-12
    inside = rej_w[:, :f].sum(1) / torch.where(ok, rej, torch.ones_like(rej))  # P(x among the top-F | rejected)
    next_col = resid[:, f] if resid.shape[1] > f else torch.zeros_like(rej)
    hits = resid[:, :f].sum(1) + inside * next_col  # = rej * P(hit | rejected)
    return float(torch.where(ok, hits, torch.zeros_like(hits)).sum()), float(rej.sum())


def accepted_hits(d: Distributions, f: int) -> float:
    """P(the bonus drawn from p is among the draft's top-F), averaged over positions."""
    return float(d.p[:, :f].sum(1).mean())


@dataclass
class CCalibration:
    """What one C gives: per-position acceptance at the fan-out it was computed for, and the hit curves."""

    acceptance: float
    rejected: sm.HitCurve
    all_accepted: sm.HitCurve


def acceptance_for_fanout(d: Distributions, c: float, a_guess: float, fanout: Sequence[int]) -> float:
    """Mean acceptance over a speculation's drafted positions j < K (topn = F_j + 1 there), weighting
    position j by the chance a_guess^j that it is reached."""
    k = len(fanout) - 1
    if k < 1:
        return float(acceptance(d, c, 0).mean())
    weights = [a_guess ** j for j in range(k)]
    vals = [float(acceptance(d, c, fanout[j] + 1).mean()) for j in range(k)]
    return sum(w * v for w, v in zip(weights, vals)) / sum(weights)


def calibrate(d: Distributions, c: float, fanout: Sequence[int], a_guess: float, max_f: int = 8) -> CCalibration:
    """The acceptance (at this fan-out) and the fitted hit curves for one C."""
    pts = []
    for f in range(1, max_f + 1):
        hits, looks = rejected_hits(d, c, f)
        pts.append((f, hits, looks))
    rejected = sm.fit_hit_curve(pts) if pts[0][2] > 1e-9 else sm.HitCurve(m1=0.0, r=1.0)
    n = len(d)
    acc_pts = [(f, accepted_hits(d, f) * n, float(n)) for f in range(1, max_f + 1)]
    return CCalibration(acceptance=acceptance_for_fanout(d, c, a_guess, fanout), rejected=rejected,
                        all_accepted=sm.fit_hit_curve(acc_pts))


def plan_c(d: Distributions, lat: sm.Latencies, ks: Sequence[int], budgets: Sequence[int],
           grid: Sequence[float] = C_GRID) -> tuple[float, sm.SsdPrediction, CCalibration, list[dict]]:
    """Choose C (and K, M) by the planned SSD speed. Each C's acceptance depends on the fan-out (topn =
    F_j + 1), which depends on the plan: plan once with the fan-out of the C = 1 plan, then again with
    the fan-out that plan chose. Returns (C, its prediction, its calibration, one row per C for the report)."""
    a1 = float(acceptance(d, 1.0, 0).mean())
    rows, best = [], None
    for c in grid:
        fan = [1, 1]
        a_guess = a1
        pred = None
        for _ in range(2):
            cal = calibrate(d, c, fan, a_guess)
            pred = sm.plan_ssd(lat, cal.acceptance, cal.rejected.r, cal.rejected, cal.all_accepted, ks, budgets)
            fan, a_guess = pred.fanout, cal.acceptance
        assert pred is not None
        rows.append({"c": c, "acceptance": cal.acceptance, "hit_rate": pred.hit_rate, "k": pred.k,
                     "fanout": pred.fanout, "predicted_tokens_per_s": pred.tokens_per_s})
        # ties go to the larger C (closer to plain speculative sampling)
        if best is None or pred.tokens_per_s > best[1].tokens_per_s * (1 + 1e-9):
            best = (c, pred, cal)
    assert best is not None
    return best[0], best[1], best[2], rows
