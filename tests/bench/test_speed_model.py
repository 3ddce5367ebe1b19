"""The planner's math (docs/algorithm.md §5) on synthetic numbers."""
from __future__ import annotations

import math
import random

import pytest

from saguaro.benchmark import speed_model as sm


def _lat(verify=0.25, contended=0.31, v2=0.20, step=0.095, step2=0.064, tree=0.05, ext=0.1) -> sm.Latencies:
    ns = range(1, 10)
    return sm.Latencies(
        target_verify={n: verify + 0.002 * n for n in ns}, target_verify_2t={n: v2 + 0.002 * n for n in ns},
        target_verify_contended={n: contended + 0.002 * n for n in ns}, draft_step=step, draft_step_2t=step2,
        draft_extend={n: ext + 0.001 * n for n in ns}, draft_extend_contended={n: 1.25 * (ext + 0.001 * n) for n in ns},
        draft_tree={m: tree + 0.004 * m for m in (1, 2, 4, 8, 16)},
        draft_tree_contended={m: 1.25 * (tree + 0.004 * m) for m in (1, 2, 4, 8, 16)})


def test_expected_tokens_closed_form_matches_the_sum():
    for a in (0.0, 0.3, 0.77, 0.91):
        for k in range(0, 8):
            p = sm.accepted_distribution(a, k)
            assert sum(p) == pytest.approx(1.0)
            assert sm.expected_tokens(a, k) == pytest.approx(sum((j + 1) * pj for j, pj in enumerate(p)))
    assert sm.expected_tokens(1.0, 4) == 5.0
    with pytest.raises(ValueError, match="acceptance"):
        sm.expected_tokens(1.2, 3)


def test_geometric_fanout_sums_to_budget_and_follows_the_formula():
    a, r, k = 0.8, 1.0, 4
    w = [a ** (j / (1 + r)) for j in range(k)] + [a ** (k / (1 + r)) * (1 - a) ** (-1 / (1 + r))]
    for m in range(k + 1, 40):
        f = sm.geometric_fanout(a, r, k, m)
        assert sum(f) == m and all(x >= 1 for x in f) and len(f) == k + 1
        shares = [m * x / sum(w) for x in w]
        assert all(abs(fi - si) < 1.0 + 1e-9 or fi == 1 for fi, si in zip(f, shares))
    # the all-accepted atom gets extra weight at high acceptance, decreasing weights before it
    f = sm.geometric_fanout(0.9, 1.0, 4, 30)
    assert f[0] >= f[1] >= f[2] >= f[3] and f[4] > f[3]
    assert sm.geometric_fanout(0.8, 1.0, 4, 3) == [1, 1, 0, 0, 1]
    # the case the old Python rounding got wrong (it gave [2, 1, 1, 1, 0, 1])
    assert sm.geometric_fanout(0.5, 0.5, 5, 6) == [1, 1, 1, 1, 1, 1]
    with pytest.raises(ValueError):
        sm.geometric_fanout(0.8, 1.0, 4, 0)


def test_planner_fanout_is_the_runtime_schedule_over_a_grid():
    """The planner predicts with the tree the runtime builds: on 3,072 cases (a, r, K, M) the planner's
    fan-out equals what a live runtime schedule (geometric, started at acceptance a) hands the draft,
    and every position gets at least one branch."""
    from saguaro import _core

    cases = 0
    for a in (0.1, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95):
        for r in (0.25, 0.5, 1.0, 1.5):
            for k in range(1, 7):
                for m in range(k + 1, k + 17):
                    planned = sm.geometric_fanout(a, r, k, m)
                    live = _core.FanoutSchedule(k, kind="geometric", budget=m, r=r, initial_acceptance=a).fanout()
                    assert planned == live, (a, r, k, m)
                    assert sum(planned) == m and min(planned) >= 1, (a, r, k, m, planned)
                    cases += 1
    assert cases == 3072


def test_fit_acceptance_recovers_a_from_a_capped_geometric_sample():
    rng = random.Random(1)
    a, k = 0.72, 4
    hist = [0] * (k + 1)
    for _ in range(20000):
        j = 0
        while j < k and rng.random() < a:
            j += 1
        hist[j] += 1
    assert sm.fit_acceptance(hist) == pytest.approx(a, abs=0.01)
    # a planted bias (every round counted as all accepted) is caught
    assert sm.fit_acceptance([0, 0, 0, 0, 100]) == 1.0
    with pytest.raises(ValueError):
        sm.fit_acceptance([0, 0, 0])


def test_fit_hit_curve_recovers_a_power_law():
    m1, r = 0.6, 0.8
    pts = [(f, 1000 * (1 - m1 * f ** -r), 1000) for f in (1, 2, 3, 4, 6, 8)]
    c = sm.fit_hit_curve(pts)
    assert c.m1 == pytest.approx(m1, rel=0.02) and c.r == pytest.approx(r, rel=0.02)
    single = sm.fit_hit_curve([(2, 700, 1000)], default_r=1.0)
    assert single.r == 1.0 and single.hit(2) == pytest.approx(0.7)
    assert c.hit(0) == 0.0


def test_hit_rate_is_the_weighted_sum_over_outcomes():
    rej, acc = sm.HitCurve(0.5, 1.0), sm.HitCurve(0.2, 1.0)
    a, k, f = 0.7, 3, [2, 1, 1, 2]
    p = sm.accepted_distribution(a, k)
    want = p[0] * (1 - 0.25) + p[1] * 0.5 + p[2] * 0.5 + p[3] * (1 - 0.1)
    assert sm.hit_rate(a, k, f, rej, acc) == pytest.approx(want)
    with pytest.raises(ValueError):
        sm.hit_rate(a, k, [1, 1], rej, acc)


def test_ssd_prediction_reduces_to_the_paper_formula():
    lat = _lat()
    rej, acc = sm.HitCurve(0.4, 1.0), sm.HitCurve(0.1, 1.0)
    a, k = 0.8, 4
    f = sm.geometric_fanout(a, 1.0, k, 8)
    p = sm.ssd_predict(lat, a, k, f, rej, acc)
    v = lat.verify(k + 1, "contended")
    tp = lat.tree_work(k, 8)
    h = sm.hit_rate(a, k, f, rej, acc)
    # in units of one verification: [h E + (1-h) E] / [h max(1, Tp) + (1-h)(max(1, Tp) + Tb)]
    tp_u, tb_u = tp / v, k * lat.draft_step / v
    speed_units = sm.expected_tokens(a, k) / (h * max(1, tp_u) + (1 - h) * (max(1, tp_u) + tb_u))
    assert p.tokens_per_s * v == pytest.approx(speed_units)
    assert p.round_over_verify >= 1.0
    # all hits and drafting hidden is the limit, never exceeded
    assert p.tokens_per_s <= sm.ssd_limit(lat, a, k) + 1e-12
    # here the draft's tree work outlasts the verification: the round is the tree, not the verify
    assert p.tree_work_s > p.verify_s and p.round_s >= p.tree_work_s
    fast = _lat(tree=0.005, ext=0.01)
    perfect = sm.ssd_predict(fast, a, k, f, sm.HitCurve(0.0, 1.0), sm.HitCurve(0.0, 1.0))
    lat = fast
    assert perfect.tokens_per_s == pytest.approx(sm.ssd_limit(lat, a, k)) and perfect.round_over_verify == pytest.approx(1.0)


def test_sd_and_ar_speed():
    lat = _lat()
    assert sm.ar_speed(lat, 1) == pytest.approx(1 / lat.verify(1))
    assert sm.ar_speed(lat, 2) == pytest.approx(1 / lat.verify(1, "2t"))
    a, k = 0.8, 4
    # the draft's first forward of a round feeds 2 tokens after a fully accepted round (a^K), else 1
    draft = a**k * 0.095 * lat.draft_extend[2] / 0.095 + (1 - a**k) * 0.095 + 3 * 0.095
    assert sm.sd_speed(lat, a, k, 1) == pytest.approx(sm.expected_tokens(a, k) / (lat.verify(5) + draft))
    assert sm.sd_speed(lat, a, k, 1) < sm.expected_tokens(a, k) / (lat.verify(5) + 4 * 0.095)
    # on 2 threads the 2-token forward scales with the 2-thread step
    draft2 = a**k * 0.064 * lat.draft_extend[2] / 0.095 + (1 - a**k) * 0.064 + 3 * 0.064
    assert sm.sd_speed(lat, a, k, 2) == pytest.approx(sm.expected_tokens(a, k) / (lat.verify(5, "2t") + draft2))
    k_best, best = sm.best_sd(lat, a, 1, range(1, 9))
    assert best == max(sm.sd_speed(lat, a, kk, 1) for kk in range(1, 9)) and 1 <= k_best <= 8


def test_plan_prefers_small_k_when_the_draft_is_slow_and_large_k_when_it_is_fast():
    rej, acc = sm.HitCurve(0.4, 1.0), sm.HitCurve(0.1, 1.0)
    slow = sm.plan_ssd(_lat(tree=0.2, ext=0.3), 0.8, 1.0, rej, acc, range(1, 9), [1, 2, 4, 8, 16])
    fast = sm.plan_ssd(_lat(tree=0.005, ext=0.01), 0.8, 1.0, rej, acc, range(1, 9), [1, 2, 4, 8, 16])
    assert slow.k < fast.k
    assert fast.tokens_per_s > slow.tokens_per_s
    for k in range(1, 9):  # the plan is the best over the grid
        for m in (k + 1, 2 * (k + 1)):
            if m in (1, 2, 4, 8, 16):
                p = sm.ssd_predict(_lat(tree=0.005, ext=0.01), 0.8, k, sm.geometric_fanout(0.8, 1.0, k, m), rej, acc)
                assert p.tokens_per_s <= fast.tokens_per_s + 1e-12


def test_critical_batch_moves_with_the_hit_rate():
    # by hand: fast = (0.9*3 + 0.1*1)/0.3 = 9.33; jit(B) = 3/(0.3 + 0.1(1 - 0.9^B)) = 9.68, 9.40, 9.17
    assert sm.critical_batch(0.9, 3.0, 1.0, 0.3, 0.1) == 3
    assert sm.critical_batch(1.0, 3.0, 1.0, 0.3, 0.4) is None  # never a miss: the fast backup never pays
    assert sm.critical_batch(0.6, 3.0, 1.0, 0.3, 0.1) is None  # its poor tokens cost more than waiting
    for h, e, ef, x, tb in ((0.8, 3.0, 1.0, 0.3, 0.4), (0.95, 4.0, 1.2, 0.25, 0.2)):
        b = sm.critical_batch(h, e, ef, x, tb)
        fast = (h * e + (1 - h) * ef) / x
        assert b is not None and fast > e / (x + (1 - h ** b) * tb)
        assert b == 1 or fast <= e / (x + (1 - h ** (b - 1)) * tb)


def test_replay_matches_hand_counted_rounds():
    # ranks: 0 = the draft's argmax is the target's token
    ranks = [0, 0, 1, 0, 0, 0, 0, 3, 0]
    tpr, hist = sm.replay_sd(ranks, 2)
    # rounds: [0,0,1]->k=2 (all accepted, bonus rank 1); [0,0,0]->k=2; [0,3]->k=1 ; [0]... let's count
    # i=0: k=2, bonus ranks[2]=1 -> i=3; i=3: k=2 -> i=6; i=6: k=1 (ranks[7]=3) -> i=8; i=8: k=1? stops at end -> i=10
    assert hist == [0, 2, 2] and tpr == pytest.approx(9 / 4)
    h, per = sm.replay_ssd_hits(ranks, 2, [1, 2, 1])
    # i=0: all accepted, bonus rank 1 < F_2=1? no -> miss; i=3: all accepted, bonus ranks[5]=0 < 1 -> hit
    # i=6: j=1, bonus rank 3 in 1..F_1=2? no -> miss; i=8: j=1 at the end -> no lookup
    assert per == [(0, 0), (0, 1), (1, 2)] and h == pytest.approx(1 / 3)


def test_curves_from_ranks():
    # ranks drawn from the model: P(rank = 0) = 0.8; given rank >= 1, P(rank > F) = 0.5 F^-0.9
    rng = random.Random(0)

    def wrong_rank() -> int:
        v = rng.random()
        f = 1
        while v < 0.5 * f ** -0.9:
            f += 1
        return f

    ranks = [0 if rng.random() < 0.8 else wrong_rank() for _ in range(20000)]
    a, rej, acc = sm.curves_from_ranks(ranks)
    assert a == pytest.approx(0.8, abs=0.01)
    assert rej.m1 == pytest.approx(0.5, abs=0.05) and rej.r == pytest.approx(0.9, abs=0.1)
    assert acc.hit(1) == pytest.approx(a, abs=0.03)
    assert rej.hit(4) > rej.hit(1)


def test_ssd_limit_is_bounded_by_the_draft_round_as_well_as_the_verification():
    a, k = 0.8, 3
    fast = _lat(tree=0.001, ext=0.002)  # the draft's round fits inside the verification
    assert sm.ssd_limit(fast, a, k) == pytest.approx(sm.expected_tokens(a, k) / fast.verify(k + 1, "contended"))
    slow = _lat(tree=0.3, ext=0.1)  # it does not: the round cannot end before the next speculation exists
    least = 1.25 * (0.1 + 0.001 * (k + 1)) + k * 1.25 * (0.3 + 0.004 * 1)
    assert least > slow.verify(k + 1, "contended")
    assert sm.ssd_limit(slow, a, k) == pytest.approx(sm.expected_tokens(a, k) / least)
