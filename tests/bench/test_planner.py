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


def test_target_verdicts_attribute_a_miss_to_physics_or_implementation():
    plan = planner.make_plan(_lat(), _ranks(), k_range=range(1, 7))
    ar2 = plan["predicted"]["saguaro-ar-2t"]
    ideal = plan["ssd_limit"]["tokens_per_s"]
    # SSD measured at 1.6x AR-2t: met
    t = {x["id"]: x for x in planner.evaluate_targets(plan, _summary(1.6 * ar2, ar2, 4, 4, 4, 4))}
    assert t["ssd_vs_ar2"]["verdict"] == "met" and t["ssd_vs_ar2"]["measured"] == pytest.approx(1.6)
    assert t["ssd_vs_ar2"]["limit"] == pytest.approx(ideal / ar2)
    # SSD measured at 1.0x: the limit decides the attribution
    t = {x["id"]: x for x in planner.evaluate_targets(plan, _summary(ar2, ar2, 4, 4, 4, 4))}
    want = "physics" if ideal / ar2 < 1.5 else "implementation"
    assert want in t["ssd_vs_ar2"]["verdict"]
    # plant an impossible target: the limit for SD vs assisted when assisted is measured 10x faster
    sd2 = plan["predicted"]["saguaro-sd-2t"]
    t = {x["id"]: x for x in planner.evaluate_targets(plan, _summary(4, 4, 4, 0.5 * sd2, 4, 10 * sd2))}
    assert "physics" in t["sd_vs_assisted"]["verdict"]
    # and one the model allows but the run missed
    t = {x["id"]: x for x in planner.evaluate_targets(plan, _summary(4, 4, 4, 0.5 * sd2, 4, 0.6 * sd2))}
    assert "implementation" in t["sd_vs_assisted"]["verdict"]
    # round/verify: a "max" target
    t = {x["id"]: x for x in planner.evaluate_targets(plan, _summary(4, 4, 4, 4, 4, 4, 300, 290))}
    assert t["round_vs_verify"]["verdict"] == "met"
    t = {x["id"]: x for x in planner.evaluate_targets(plan, _summary(4, 4, 4, 4, 4, 4, 600, 290))}
    assert t["round_vs_verify"]["verdict"].startswith("missed")
    assert {x["verdict"] for x in planner.evaluate_targets(plan, {})} == {"not measured"}


def test_rescore_recomputes_limit_and_verdicts_from_stored_json():
    import json
    from dataclasses import asdict

    from saguaro.benchmark.rescore import latencies, rescore

    lat = _lat()
    plan = planner.make_plan(lat, _ranks(), k_range=range(1, 7))
    stored = json.loads(json.dumps(plan))  # int keys become strings, as in a results file
    assert asdict(latencies(stored["latencies"])) == asdict(lat)
    ar2 = plan["predicted"]["saguaro-ar-2t"]
    results = {"planner": stored, "summary": _summary(ar2, ar2, 4, 4, 4, 4), "targets": []}
    stored["ssd_limit"] = {"k": 1, "tokens_per_s": 1e9, "meaning": "stale"}
    out = rescore(results)
    assert out["planner"]["ssd_limit"]["tokens_per_s"] == pytest.approx(plan["ssd_limit"]["tokens_per_s"])
    assert out["targets"] == planner.evaluate_targets(plan, results["summary"])
    with pytest.raises(ValueError, match="no planner section"):
        rescore({"summary": {}})
