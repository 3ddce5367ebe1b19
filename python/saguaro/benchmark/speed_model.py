"""The expected-speed model of docs/algorithm.md §5, in seconds and tokens (pure math, no models).

Acceptance is capped-geometric with per-token acceptance a; the speculation-cache miss rate at a
position with fan-out F is m1 * F^(-r) (m1 = miss rate with one candidate). Latencies are measured
(see planner.measure): target verification of n = K+1 tokens, draft single-token steps, the trunk
forward and tree steps of M branches, alone and while the other model runs (memory bandwidth).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence


def expected_tokens(a: float, k: int) -> float:
    """E[tokens per round] = (1 - a^(K+1)) / (1 - a): accepted drafts plus the bonus token."""
    if not 0.0 <= a <= 1.0:
        raise ValueError(f"acceptance a must be in [0, 1], got {a}")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if a == 1.0:
        return float(k + 1)
    return (1.0 - a ** (k + 1)) / (1.0 - a)


def acceptance_from_tokens(tokens_per_round: float, k: int) -> float:
    """The a with expected_tokens(a, K) = tokens_per_round (in [1, K+1]): a run's acceptance as the
    model sees it, from the tokens per round it measured (bisection; E is increasing in a)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not 1.0 <= tokens_per_round <= k + 1:
        raise ValueError(f"tokens per round must be in [1, K+1 = {k + 1}], got {tokens_per_round}")
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if expected_tokens(mid, k) < tokens_per_round else (lo, mid)
    return 0.5 * (lo + hi)


def accepted_distribution(a: float, k: int) -> list[float]:
    """P(j drafts accepted), j = 0..K: a^j (1 - a) for j < K and a^K for j = K."""
    return [a ** j * (1.0 - a) for j in range(k)] + [a ** k]


def geometric_fanout(a: float, r: float, k: int, budget: int) -> list[int]:
    """F_0..F_K ∝ P(j)^(1/(1+r)) (docs/algorithm.md §2.2): the runtime's own schedule.

    This calls the C++ ``FanoutSchedule.geometric`` that the runtime uses every round, so the
    planner predicts with the tree the runtime builds (one rounding rule: integers >= 1 summing to the
    budget when budget >= K+1; below that the most likely positions get one branch each).
    """
    from saguaro import _core

    if budget < 1:
        raise ValueError(f"fan-out budget must be >= 1, got {budget}")
    if r <= 0:
        raise ValueError(f"r must be > 0, got {r}")
    return list(_core.FanoutSchedule.geometric(float(a), float(r), int(k), int(budget)))


@dataclass(frozen=True)
class HitCurve:
    """miss(F) = m1 * F^(-r), clamped to [0, 1]; miss(0) = 1 (no candidate, no hit)."""

    m1: float
    r: float

    def hit(self, f: int) -> float:
        """Probability that the outcome's bonus token is among the F cached candidates."""
        if f <= 0:
            return 0.0
        return 1.0 - min(1.0, max(0.0, self.m1 * f ** (-self.r)))


def hit_rate(a: float, k: int, fanout: Sequence[int], rejected: HitCurve, all_accepted: HitCurve) -> float:
    """h = sum_{j<K} P(j) hit_rej(F_j) + P(K) hit_acc(F_K)."""
    if len(fanout) != k + 1:
        raise ValueError(f"fanout must have k+1 = {k + 1} entries, got {len(fanout)}")
    p = accepted_distribution(a, k)
    return sum(p[j] * rejected.hit(fanout[j]) for j in range(k)) + p[k] * all_accepted.hit(fanout[k])


def fit_acceptance(histogram: Sequence[float]) -> float:
    """MLE of a for capped-geometric accepted counts: histogram[j] = rounds that accepted j of K drafts.

    Each round with j < K contributes j successes and one failure; j = K contributes K successes.
    """
    k = len(histogram) - 1
    if k < 1:
        raise ValueError("the accepted histogram needs K+1 >= 2 entries")
    succ = sum(j * n for j, n in enumerate(histogram))
    fail = sum(n for j, n in enumerate(histogram) if j < k)
    if succ + fail == 0:
        raise ValueError("the accepted histogram is empty: run some speculative rounds first")
    return succ / (succ + fail)


def fit_hit_curve(points: Sequence[tuple[int, float, float]], default_r: float = 1.0) -> HitCurve:
    """Fit miss(F) = m1 F^-r to (F, hits, lookups) points by weighted least squares on log miss vs log F.

    Points with no lookups are ignored; a miss rate of 0 is floored at half a lookup. With a single
    fan-out value only m1 is identified: r = ``default_r``.
    """
    pts = []
    for f, hits, lookups in points:
        if lookups <= 0 or f <= 0:
            continue
        miss = max(lookups - hits, 0.5) / lookups
        pts.append((math.log(f), math.log(min(miss, 1.0)), lookups))
    if not pts:
        raise ValueError("no (fan-out, hits, lookups) point with lookups > 0 to fit")
    if len({x for x, _, _ in pts}) < 2:
        w = sum(n for _, _, n in pts)
        ly = sum(y * n for _, y, n in pts) / w
        x0 = pts[0][0]
        return HitCurve(m1=min(1.0, math.exp(ly + default_r * x0)), r=default_r)
    w = sum(n for _, _, n in pts)
    mx = sum(x * n for x, _, n in pts) / w
    my = sum(y * n for _, y, n in pts) / w
    sxx = sum(n * (x - mx) ** 2 for x, _, n in pts)
    sxy = sum(n * (x - mx) * (y - my) for x, y, n in pts)
    slope = sxy / sxx
    r = max(-slope, 1e-3)
    m1 = math.exp(my + r * mx)
    return HitCurve(m1=min(m1, 1.0), r=r)


def _interp(table: dict[int, float], n: int) -> float:
    """Linear interpolation (and extrapolation from the two nearest) in a measured n → seconds table."""
    if not table:
        raise ValueError("no measurement to interpolate")
    if n in table:
        return table[n]
    keys = sorted(table)
    if len(keys) == 1:
        return table[keys[0]]
    lo = max([x for x in keys if x < n], default=None)
    hi = min([x for x in keys if x > n], default=None)
    if lo is None:
        lo, hi = keys[0], keys[1]
    elif hi is None:
        lo, hi = keys[-2], keys[-1]
    return table[lo] + (table[hi] - table[lo]) * (n - lo) / (hi - lo)


@dataclass
class Latencies:
    """Measured seconds. ``*_verify`` tables are keyed by tokens per forward (K+1); tree tables by M.

    ``contended`` tables were measured while the other model ran on the other core.
    """

    target_verify: dict[int, float]                      # target, 1 thread, alone
    target_verify_2t: dict[int, float]                   # target, 2 threads, alone
    target_verify_contended: dict[int, float]            # target, 1 thread, draft busy on the other core
    draft_step: float                                    # draft, 1 token, 1 thread, alone
    draft_step_2t: float
    draft_extend: dict[int, float]                       # draft trunk forward of n tokens, alone
    draft_extend_contended: dict[int, float]
    draft_tree: dict[int, float]                         # one tree step of M branches, alone
    draft_tree_contended: dict[int, float]
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_json(cls, stored: dict) -> "Latencies":
        """A Latencies from its JSON form (asdict, then JSON: the tables' int keys became strings)."""
        fields = {}
        for key, value in stored.items():
            if isinstance(value, dict) and key != "extra":
                value = {int(n): float(t) for n, t in value.items()}
            fields[key] = value
        return cls(**fields)

    def verify(self, n: int, kind: str = "1t") -> float:
        """Target forward of n tokens: kind "1t", "2t" or "contended"."""
        table = {"1t": self.target_verify, "2t": self.target_verify_2t,
                 "contended": self.target_verify_contended}[kind]
        return _interp(table, n)

    def tree_work(self, k: int, m: int, contended: bool = True) -> float:
        """T_p: the draft's per-round SSD work = trunk forward of K+1 tokens + K tree steps of M branches."""
        ext = self.draft_extend_contended if contended and self.draft_extend_contended else self.draft_extend
        tree = self.draft_tree_contended if contended and self.draft_tree_contended else self.draft_tree
        return _interp(ext, k + 1) + k * _interp(tree, m)


def ar_speed(lat: Latencies, threads: int = 1) -> float:
    """Tokens/s of target-only decoding: one single-token forward per token."""
    return 1.0 / lat.verify(1, "2t" if threads == 2 else "1t")


def sd_draft_seconds(lat: Latencies, a: float, k: int, threads: int = 1) -> float:
    """The draft's forwards in one SD round. The first also feeds what the draft has not seen: after a
    round that accepted all K drafts (probability a^K) the last draft and the bonus token, two tokens,
    else the bonus alone; K - 1 single-token steps follow. (Traced on the quantized default pair, K = 1,
    a ~ 0.97: the draft fed 2 tokens in 119 of 126 rounds, 28 ms against a 25 ms step.) The 2-token
    forward is the measured 1-thread extend(2) / step ratio times the step on `threads`."""
    step = lat.draft_step_2t if threads == 2 else lat.draft_step
    two = step * _interp(lat.draft_extend, 2) / lat.draft_step if lat.draft_extend and lat.draft_step > 0 else step
    p_all = a ** k
    return p_all * two + (1.0 - p_all) * step + (k - 1) * step


def sd_speed(lat: Latencies, a: float, k: int, threads: int = 1) -> float:
    """Tokens/s of synchronous SD: E(a, K) / (verify(K+1) + the draft's K forwards), same cores for both."""
    verify = lat.verify(k + 1, "2t" if threads == 2 else "1t")
    return expected_tokens(a, k) / (verify + sd_draft_seconds(lat, a, k, threads))


@dataclass
class SsdPrediction:
    """One SSD configuration's predicted figures (seconds, tokens)."""

    k: int
    budget: int
    fanout: list[int]
    hit_rate: float
    tokens_per_round: float
    verify_s: float
    tree_work_s: float
    backup_s: float
    round_s: float
    tokens_per_s: float

    @property
    def round_over_verify(self) -> float:
        """Predicted mean round time / mean (contended) verify time: SSD's overhead, 1.0 is perfect."""
        return self.round_s / self.verify_s


def ssd_predict(lat: Latencies, a: float, k: int, fanout: Sequence[int], rejected: HitCurve,
                all_accepted: HitCurve) -> SsdPrediction:
    """§5 with latencies: a hit round lasts max(verify, T_p); a miss adds the jit backup (K draft steps).

    speed = [h E_hit + (1-h) E_miss] / [h max(V, T_p) + (1-h)(T_b + max(V, T_p))], E_hit = E_miss =
    E(a, K) (a jit backup drafts the same way the cache entries were drafted).
    """
    return ssd_predict_at_hit_rate(lat, a, k, fanout, hit_rate(a, k, fanout, rejected, all_accepted))


def ssd_predict_at_hit_rate(lat: Latencies, a: float, k: int, fanout: Sequence[int], h: float) -> SsdPrediction:
    """ssd_predict with the hit rate given (e.g. the one a run measured) instead of modelled: what this
    plan yields with no overhead beyond the model's round, so a run's shortfall from it is the
    implementation's and the rest is the draft's hit rate or the hardware."""
    if not 0.0 <= h <= 1.0:
        raise ValueError(f"hit rate must be in [0, 1], got {h}")
    m = int(sum(fanout))
    e = expected_tokens(a, k)
    v = lat.verify(k + 1, "contended")
    tp = lat.tree_work(k, m, contended=True)
    tb = k * lat.draft_step
    x = max(v, tp)
    round_s = h * x + (1.0 - h) * (tb + x)
    return SsdPrediction(k=k, budget=m, fanout=list(fanout), hit_rate=h, tokens_per_round=e, verify_s=v,
                         tree_work_s=tp, backup_s=tb, round_s=round_s, tokens_per_s=e / round_s)


def ssd_limit(lat: Latencies, a: float, k: int) -> float:
    """The most SSD can do at this K: every round a cache hit, E(a,K) tokens per round, and a round
    as short as the longer of the contended verification of K+1 tokens and the draft's least round
    (its trunk forward plus K of its cheapest measured tree steps): a round cannot end before the
    draft has built the next speculation."""
    tree = lat.draft_tree_contended or lat.draft_tree
    least_round = 0.0
    if tree:
        ext = lat.draft_extend_contended or lat.draft_extend
        least_round = _interp(ext, k + 1) + k * min(tree.values())
    return expected_tokens(a, k) / max(lat.verify(k + 1, "contended"), least_round)


def best_sd(lat: Latencies, a: float, threads: int, k_range: Sequence[int]) -> tuple[int, float]:
    """(K, tokens/s) of the fastest synchronous SD over k_range."""
    return max(((k, sd_speed(lat, a, k, threads)) for k in k_range), key=lambda kv: kv[1])


def plan_ssd(lat: Latencies, a: float, r: float, rejected: HitCurve, all_accepted: HitCurve,
             k_range: Sequence[int] = range(1, 9), budgets: Optional[Sequence[int]] = None) -> SsdPrediction:
    """The (K, M) with the highest predicted SSD speed; F_j from the geometric schedule at (a, r)."""
    best: Optional[SsdPrediction] = None
    for k in k_range:
        for m in (budgets or range(k + 1, 4 * (k + 1) + 1)):
            pred = ssd_predict(lat, a, k, geometric_fanout(a, r, k, m), rejected, all_accepted)
            if best is None or pred.tokens_per_s > best.tokens_per_s:
                best = pred
    if best is None:
        raise ValueError("empty K range or budget list")
    return best


def critical_batch(h: float, tokens_hit: float, tokens_fast: float, hit_round_s: float, backup_s: float,
                   max_batch: int = 256) -> Optional[int]:
    """Smallest batch B from which the fast backup beats the neural (jit) one, or None up to max_batch.

    jit: the whole batch waits for the backup unless every row hits (probability h^B):
    E / (X + (1 - h^B) T_b). fast: a missed row gets a near-free, poor speculation:
    (h E + (1 - h) E_fast) / X.
    """
    if not 0.0 <= h <= 1.0:
        raise ValueError(f"hit rate must be in [0, 1], got {h}")
    fast = (h * tokens_hit + (1.0 - h) * tokens_fast) / hit_round_s
    for b in range(1, max_batch + 1):
        jit = tokens_hit / (hit_round_s + (1.0 - h ** b) * backup_s)
        if fast > jit:
            return b
    return None


# ------------------------------------------------------------------ replay of a teacher-forced text
def replay_sd(ranks: Sequence[int], k: int) -> tuple[float, list[int]]:
    """Greedy SD replayed on a text: ranks[i] = rank of the target's token i in the draft's distribution
    (0 = the draft's argmax). Returns (tokens per round, accepted histogram)."""
    hist = [0] * (k + 1)
    i, rounds, n = 0, 0, len(ranks)
    while i < n:
        j = 0
        while j < k and i + j < n and ranks[i + j] == 0:
            j += 1
        hist[j] += 1
        rounds += 1
        i += j + 1
    return (n / rounds if rounds else 0.0), hist


def replay_ssd_hits(ranks: Sequence[int], k: int, fanout: Sequence[int]) -> tuple[float, list[tuple[int, int]]]:
    """Greedy SSD cache hits replayed on a text: outcome (j < K) hits iff the bonus token's draft rank is
    in 1..F_j (the drafted token, rank 0, is excluded); (K) hits iff its rank < F_K.
    Returns (hit rate, [(hits, lookups)] per position)."""
    per = [[0, 0] for _ in range(k + 1)]
    i, n = 0, len(ranks)
    while i < n:
        j = 0
        while j < k and i + j < n and ranks[i + j] == 0:
            j += 1
        if i + j >= n:
            break
        rank = ranks[i + j]
        hit = (1 <= rank <= fanout[j]) if j < k else (rank < fanout[k])
        per[j][0] += int(hit)
        per[j][1] += 1
        i += j + 1
    hits, looks = sum(p[0] for p in per), sum(p[1] for p in per)
    return (hits / looks if looks else 0.0), [(p[0], p[1]) for p in per]


def curves_from_ranks(ranks: Sequence[int], max_f: int = 8) -> tuple[float, HitCurve, HitCurve]:
    """(a, rejected-position curve, all-accepted curve) fitted from teacher-forced ranks.

    a = share of positions where the draft's argmax is the target's token. After a rejection the
    bonus token is never the draft's argmax: it hits with F candidates iff its rank is in 1..F.
    After all accepted it hits iff its rank < F.
    """
    if not ranks:
        raise ValueError("no ranks to fit")
    n = len(ranks)
    a = sum(1 for x in ranks if x == 0) / n
    wrong = [x for x in ranks if x > 0]
    rej_points = [(f, sum(1 for x in wrong if x <= f), len(wrong)) for f in range(1, max_f + 1)]
    acc_points = [(f, sum(1 for x in ranks if x < f), n) for f in range(1, max_f + 1)]
    rejected = fit_hit_curve(rej_points) if wrong else HitCurve(m1=0.0, r=1.0)
    return a, rejected, fit_hit_curve(acc_points)
