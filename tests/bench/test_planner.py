"""The planner's choice and its target verdicts, from synthetic latencies and calibration ranks."""
from __future__ import annotations

import random

import pytest

from saguaro.benchmark import planner
from saguaro.benchmark import speed_model as sm


def _lat(tree=0.01) -> sm.Latencies:
    ns = range(1, 8)
    return sm.Latencies(
        target_verify={n: 0.25 + 0.003 * n for n in ns}, target_verify_2t={n: 0.19 + 0.003 * n for n in ns},
        target_verify_contended={n: 0.31 + 0.003 * n for n in ns}, draft_step=0.095, draft_step_2t=0.064,
        draft_extend={n: 0.1 + 0.002 * n for n in ns}, draft_extend_contended={n: 0.12 + 0.002 * n for n in ns},
        draft_tree={m: tree + 0.004 * m for m in (1, 2, 4, 6, 8)},
        draft_tree_contended={m: 1.2 * (tree + 0.004 * m) for m in (1, 2, 4, 6, 8)})


def _ranks(a=0.8, n=3000, seed=0):
    rng = random.Random(seed)
    return [0 if rng.random() < a else int(rng.paretovariate(1.2)) for _ in range(n)]


def test_plan_is_consistent_with_the_speed_model():
    lat, ranks = _lat(), _ranks()
    plan = planner.make_plan(lat, ranks, k_range=range(1, 7))
    a, rej, acc = sm.curves_from_ranks(ranks)
    assert plan["acceptance"] == pytest.approx(a)
    assert sum(plan["fanout"]) == plan["fanout_budget"] and len(plan["fanout"]) == plan["k"] + 1
    best = sm.plan_ssd(lat, a, rej.r, rej, acc, range(1, 7), sorted(lat.draft_tree))
    assert plan["predicted"]["saguaro-ssd"] == pytest.approx(best.tokens_per_s)
    assert plan["predicted"]["saguaro-ssd"] <= plan["ssd_limit"]["tokens_per_s"]
    assert plan["predicted"]["saguaro-ar-1t"] == pytest.approx(1 / lat.verify(1))
    assert plan["saguaro_c"] == 1.0 and "no effect" in plan["saguaro_c_note"]
    # a slower draft tree means a smaller or equal K
    slow = planner.make_plan(_lat(tree=0.3), ranks, k_range=range(1, 7))
    assert slow["k"] <= plan["k"]


def _summary(ssd, ar2, sd1, sd2, hf, assisted, round_ms=300.0, verify_ms=280.0):
    s = {"saguaro-ssd": {"decode_tps": ssd, "round_time_ms": round_ms, "verify_time_ms": verify_ms},
         "saguaro-ar-2t": {"decode_tps": ar2}, "saguaro-sd-1t": {"decode_tps": sd1},
         "saguaro-sd-2t": {"decode_tps": sd2}, "transformers-ar-2t": {"decode_tps": hf},
         "transformers-assisted-2t": {"decode_tps": assisted}}
    return s


def _with_run(summary, plan, hit_rate, tokens_per_round=None):
    summary["saguaro-ssd"].update(hit_rate=hit_rate, tokens_per_round=tokens_per_round or
                                  sm.expected_tokens(plan["acceptance"], plan["k"]))
    return summary


def test_target_verdicts_attribute_a_miss_to_implementation_hit_rate_or_physics():
    lat = _lat()
    plan = planner.make_plan(lat, _ranks(), k_range=range(1, 7))
    ar2 = plan["predicted"]["saguaro-ar-2t"]
    # SSD measured at 1.6x AR-2t: met
    t = {x["id"]: x for x in planner.evaluate_targets(plan, _summary(1.6 * ar2, ar2, 4, 4, 4, 4))}
    assert t["ssd_vs_ar2"]["verdict"] == "met" and t["ssd_vs_ar2"]["measured"] == pytest.approx(1.6)
    # LIMIT: the run's own plan at the run's acceptance (from its tokens per round) and hit rate
    tpr = 3.4
    s = _with_run(_summary(ar2, ar2, 4, 4, 4, 4), plan, 0.8, tpr)
    t = {x["id"]: x for x in planner.evaluate_targets(plan, s)}
    a_run = sm.acceptance_from_tokens(tpr, plan["k"])
    want = sm.ssd_predict_at_hit_rate(lat, a_run, plan["k"], plan["fanout"], 0.8).tokens_per_s / sm.ar_speed(lat, 2)
    assert t["ssd_vs_ar2"]["limit"] == pytest.approx(want)
    assert t["ssd_vs_ar2"]["bound"] >= t["ssd_vs_ar2"]["limit"]
    assert "80%" in t["ssd_vs_ar2"]["limit_source"]
    # at 1.0x with 80% hits the model still reaches 1.5x: the shortfall is the implementation's
    assert t["ssd_vs_ar2"]["limit"] >= 1.5 and "implementation" in t["ssd_vs_ar2"]["verdict"]
    assert t["ssd_vs_ar2"]["of_limit"] == pytest.approx(1.0 / t["ssd_vs_ar2"]["limit"])
    # with no hits at all only a better draft reaches it: every-round-a-hit would
    t = {x["id"]: x for x in planner.evaluate_targets(plan, _with_run(_summary(ar2, ar2, 4, 4, 4, 4), plan, 0.0))}
    assert t["ssd_vs_ar2"]["limit"] < 1.5 <= t["ssd_vs_ar2"]["bound"]
    assert t["ssd_vs_ar2"]["verdict"].startswith("missed: hit rate") and "0%" in t["ssd_vs_ar2"]["verdict"]
    # a draft too slow for any round to fit: beyond the bound, physics
    slow = planner.make_plan(_lat(tree=0.3), _ranks(), k_range=range(1, 7))
    s = _with_run(_summary(ar2, ar2, 4, 4, 4, 4), slow, 1.0)
    t = {x["id"]: x for x in planner.evaluate_targets(slow, s)}
    assert t["ssd_vs_ar2"]["bound"] < 1.5 and t["ssd_vs_ar2"]["verdict"].startswith("missed: physics")
    # the SSD method's own K and fan-out are the ones the LIMIT models
    other = [{"name": "saguaro-ssd", "k": 1, "fanout": [1, 2]}]
    t = {x["id"]: x for x in planner.evaluate_targets(plan, _with_run(_summary(ar2, ar2, 4, 4, 4, 4), plan, 0.5, 1.5),
                                                     other)}
    a1 = sm.acceptance_from_tokens(1.5, 1)
    assert t["ssd_vs_ar2"]["limit"] == pytest.approx(
        sm.ssd_predict_at_hit_rate(lat, a1, 1, [1, 2], 0.5).tokens_per_s / sm.ar_speed(lat, 2))
    # a run at K = 1 accepting a lot: even every round a hit at K = 1 stays below 1.5x, a longer K
    # would reach it: the plan's doing, not the draft's hit rate nor physics
    t = {x["id"]: x for x in planner.evaluate_targets(plan, _with_run(_summary(ar2, ar2, 4, 4, 4, 4), plan, 0.5, 1.95),
                                                     other)}
    x = t["ssd_vs_ar2"]
    assert x["bound_at_run_k"] == pytest.approx(sm.ssd_limit(lat, sm.acceptance_from_tokens(1.95, 1), 1) / sm.ar_speed(lat, 2))
    assert x["limit"] < x["bound_at_run_k"] < 1.5 <= x["bound"]
    assert x["verdict"].startswith("missed: plan") and "K = 1" in x["verdict"]
    # peers: an impossible target (assisted measured 10x faster) and one the model allows
    sd2 = plan["predicted"]["saguaro-sd-2t"]
    t = {x["id"]: x for x in planner.evaluate_targets(plan, _summary(4, 4, 4, 0.5 * sd2, 4, 10 * sd2))}
    assert "physics" in t["sd_vs_assisted"]["verdict"]
    t = {x["id"]: x for x in planner.evaluate_targets(plan, _summary(4, 4, 4, 0.5 * sd2, 4, 0.6 * sd2))}
    assert "implementation" in t["sd_vs_assisted"]["verdict"]
    # round/verify: a "max" target; at the run's hit rate misses add the backup to the round
    t = {x["id"]: x for x in planner.evaluate_targets(plan, _summary(4, 4, 4, 4, 4, 4, 300, 290))}
    assert t["round_vs_verify"]["verdict"] == "met"
    t = {x["id"]: x for x in planner.evaluate_targets(plan, _with_run(_summary(4, 4, 4, 4, 4, 4, 600, 290), plan, 0.0))}
    assert t["round_vs_verify"]["limit"] > 1.15 >= t["round_vs_verify"]["bound"]
    assert t["round_vs_verify"]["verdict"].startswith("missed: hit rate")
    assert {x["verdict"] for x in planner.evaluate_targets(plan, {})} == {"not measured"}


def test_acceptance_from_tokens_inverts_expected_tokens():
    for a in (0.0, 0.3, 0.7, 0.95):
        for k in (1, 3, 6):
            assert sm.acceptance_from_tokens(sm.expected_tokens(a, k), k) == pytest.approx(a, abs=1e-9)
    with pytest.raises(ValueError, match="tokens per round"):
        sm.acceptance_from_tokens(4.5, 3)


def test_rescore_recomputes_limit_and_verdicts_from_stored_json():
    import json
    from dataclasses import asdict

    from saguaro.benchmark.rescore import rescore

    lat = _lat()
    plan = planner.make_plan(lat, _ranks(), k_range=range(1, 7))
    stored = json.loads(json.dumps(plan))  # int keys become strings, as in a results file
    assert asdict(sm.Latencies.from_json(stored["latencies"])) == asdict(lat)
    ar2 = plan["predicted"]["saguaro-ar-2t"]
    results = {"planner": stored, "summary": _summary(ar2, ar2, 4, 4, 4, 4), "targets": []}
    stored["ssd_limit"] = {"k": 1, "tokens_per_s": 1e9, "meaning": "stale"}
    out = rescore(results)
    assert out["planner"]["ssd_limit"]["tokens_per_s"] == pytest.approx(plan["ssd_limit"]["tokens_per_s"])
    assert out["targets"] == planner.evaluate_targets(plan, results["summary"])
    # the run's SSD method (K and fan-out) is read back from the results
    results["methods"] = [{"name": "saguaro-ssd", "k": 1, "fanout": [1, 2]}]
    results["summary"]["saguaro-ssd"].update(hit_rate=0.5, tokens_per_round=1.5)
    assert rescore(results)["targets"] == planner.evaluate_targets(plan, results["summary"], results["methods"])
    with pytest.raises(ValueError, match="no planner section"):
        rescore({"summary": {}})
