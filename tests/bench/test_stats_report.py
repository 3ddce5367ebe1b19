"""Summaries, ratios and the written results, on synthetic samples (no models)."""
from __future__ import annotations

import json
import struct

import pytest

from saguaro.benchmark import stats
from saguaro.benchmark.methods import select, standard_methods, with_ssd_plan
from saguaro.benchmark.report import markdown, write_all


def _sample(method, prompt, tokens, elapsed, ttft, **metrics):
    return {"method": method, "prompt_id": prompt, "token_ids": list(range(tokens)), "elapsed_s": elapsed,
            "ttft_s": ttft, "metrics": metrics, "peak_rss_mib": 100.0}


def _samples():
    out = []
    for i, p in enumerate(["p0", "p1", "p2"]):
        out.append(_sample("saguaro-ar-1t", p, 9, 1.0 + 8 / 4.0, 1.0))                 # 4 tok/s decode
        out.append(_sample("saguaro-ar-2t", p, 9, 1.0 + 8 / 5.0, 1.0))                 # 5
        out.append(_sample("saguaro-sd-1t", p, 9, 1.0 + 8 / 6.0, 1.0, rounds=3))       # 6
        out.append(_sample("saguaro-ssd", p, 9, 1.0 + 8 / (9.0 + i), 1.0, rounds=2,    # 9, 10, 11
                           engine_delta={"rounds": 2, "round_s": 0.6, "target_verify_s": 0.5,
                                         "draft_tree_s": 0.4, "draft_tree_hidden_s": 0.3},
                           hits_per_position=[1, 0, 2], lookups_per_position=[2, 1, 2]))
        out.append(_sample("transformers-ar-2t", p, 9, 1.0 + 8 / 2.5, 1.0))            # 2.5
    return out


def test_sample_figures_exclude_the_prefill():
    f = stats.sample_figures(_sample("x", "p", 9, 3.0, 1.0))
    assert f["decode_tps"] == pytest.approx(8 / 2.0) and f["e2e_tps"] == pytest.approx(3.0)
    f = stats.sample_figures(_samples()[3])
    assert f["round_time_ms"] == pytest.approx(300) and f["verify_time_ms"] == pytest.approx(250)
    assert f["fraction_hidden"] == pytest.approx(0.75) and f["hit_rate"] == pytest.approx(3 / 5)
    assert f["tokens_per_round"] == pytest.approx(4.5)


def test_prompt_processing_is_the_prompts_tokens_over_the_time_to_the_first_token():
    s = dict(_sample("x", "p", 9, 3.0, 0.5), prompt_tokens=700)
    assert stats.sample_figures(s)["prompt_tps"] == pytest.approx(1400)
    assert stats.sample_figures(_sample("x", "p", 9, 3.0, None))["prompt_tps"] is None  # no TTFT: no figure
    rows = [dict(_sample("x", f"p{i}", 9, 3.0, t), prompt_tokens=100) for i, t in enumerate((0.5, 1.0, 2.0))]
    assert stats.summarize(rows, ["x"])["x"]["prompt_tps"] == pytest.approx(100)  # the median
    assert "| prompt tok/s |" in markdown(_results())


def test_summary_and_ratios_come_from_the_same_run():
    names = ["saguaro-ar-1t", "saguaro-ar-2t", "saguaro-sd-1t", "saguaro-ssd", "transformers-ar-2t"]
    s = stats.summarize(_samples(), names, reference="saguaro-ar-1t")
    assert s["saguaro-ssd"]["decode_tps"] == pytest.approx(10.0)
    assert s["saguaro-ar-2t"]["decode_tps"] == pytest.approx(5.0)
    assert s["saguaro-ssd"]["agreement_with_reference"] == 1.0
    r = {x["label"]: x for x in stats.ratios(s, _samples())}
    assert r["SSD / best AR"]["value"] == pytest.approx(10 / 5) and r["SSD / best AR"]["denominator"] == "saguaro-ar-2t"
    assert r["SSD / best SD"]["value"] == pytest.approx(10 / 6)
    assert r["saguaro AR / transformers AR"]["value"] == pytest.approx(5 / 2.5)
    assert r["SSD / SD 1-thread"]["paired"] == pytest.approx(10 / 6)
    assert r["saguaro SD / assisted"]["value"] is None and r["saguaro SD / assisted"]["why_missing"]
    assert r["SSD round time / verify time"]["value"] == pytest.approx(1.2)


def test_agreement_catches_a_diverging_method():
    samples = _samples()
    samples[3]["token_ids"] = [0, 1, 2, 99, 4, 5, 6, 7, 8]  # plant a divergence at token 3 of prompt p0
    s = stats.summarize(samples, ["saguaro-ar-1t", "saguaro-ssd"], reference="saguaro-ar-1t")
    assert s["saguaro-ssd"]["agreement_with_reference"] == pytest.approx((3 / 9 + 1 + 1) / 3)


def test_methods_selection_and_plan():
    ms = standard_methods(cores=[3, 5])
    ssd = [m for m in ms if m.name == "saguaro-ssd"][0]
    assert ssd.target_cores == (3,) and ssd.draft_cores == (5,) and ssd.cores == (3, 5)
    assert [m.name for m in select(ms, ["ar-1t", "ssd", "hf-ar"])] == ["saguaro-ar-1t", "saguaro-ssd", "transformers-ar-2t"]
    with pytest.raises(ValueError, match="unknown method"):
        select(ms, ["ssd-9t"])
    with pytest.raises(ValueError, match="two cores"):
        standard_methods(cores=[0])
    planned = with_ssd_plan(ms, k=2, fanout=[2, 1, 3], saguaro_c=0.5, backup="jit", sd_k=3)
    p = {m.name: m for m in planned}
    assert p["saguaro-ssd"].k == 2 and p["saguaro-ssd"].fanout == (2, 1, 3) and p["saguaro-sd-1t"].k == 3


def _results():
    ms = select(standard_methods(cores=[0, 1]), ["ar-1t", "ar-2t", "sd-1t", "ssd", "hf-ar"])
    names = [m.name for m in ms]
    s = stats.summarize(_samples(), names, reference="saguaro-ar-1t")
    return {"config": {"target": "t", "draft": "d", "dtype": "bf16", "max_new_tokens": 9, "temperature": 0.0,
                       "batch": 1, "seed": 0, "command": "python -m bench.run --x", "notes": "a note"},
            "machine": {"cpu_model": "cpu", "affinity": [0, 1]}, "methods": [m.to_dict() for m in ms],
            "prompts": [{"id": p, "source": "s"} for p in ("p0", "p1", "p2")], "samples": _samples(),
            "summary": s, "ratios": stats.ratios(s, _samples()), "started_utc": "a", "finished_utc": "b",
            "wall_s": 1.0, "planner": None, "nan": float("nan")}


def test_report_writes_json_markdown_and_png(tmp_path):
    paths = write_all(_results(), tmp_path, "r")
    data = json.loads(paths["json"].read_text())  # strict JSON: NaN was written as null
    assert data["nan"] is None and len(data["samples"]) == 15
    md = paths["md"].read_text()
    assert "python -m bench.run --x" in md and "| saguaro-ssd |" in md and "| SSD / best AR | 2.00 |" in md
    png = paths["png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", png[16:24])
    assert w > 300 and h > 200


def test_markdown_shows_missing_figures_as_dashes():
    md = markdown(_results())
    row = [line for line in md.splitlines() if line.startswith("| saguaro-ar-1t |")][0]
    assert "–" in row  # no hit rate for AR


def test_decode_rate_counts_only_tokens_after_the_first_delivery():
    s = _sample("transformers-assisted-2t", "p", 9, 3.0, 1.0)
    s["first_tokens"] = 3  # assisted generation delivered 3 tokens with the first one
    assert stats.sample_figures(s)["decode_tps"] == pytest.approx(6 / 2.0)


def test_batch_metrics_sum_counters_and_recompute_rates():
    from saguaro.benchmark.worker import batch_metrics

    a = {"rounds": 4, "generated_tokens": 8, "hits_per_position": [2, 1], "lookups_per_position": [3, 1],
         "accepted_per_position": [3, 1], "proposed_per_position": [4, 4], "cache_hit_rate": 0.75, "prefill_s": 1.0}
    b = {"rounds": 6, "generated_tokens": 8, "hits_per_position": [0, 0, 1], "lookups_per_position": [5, 1, 1],
         "accepted_per_position": [1, 0], "proposed_per_position": [6, 6], "cache_hit_rate": 0.1, "prefill_s": 2.0}
    m = batch_metrics([a, b])
    assert m["rounds"] == 10 and m["generated_tokens"] == 16 and m["tokens_per_round"] == 1.6
    assert m["hits_per_position"] == [2, 1, 1] and m["lookups_per_position"] == [8, 2, 1]
    assert m["cache_hit_rate"] == 4 / 11 and m["acceptance_rate"] == 5 / 20 and m["batch_size"] == 2
    assert batch_metrics([a]) is a


def test_make_batches_keeps_order_and_the_short_last_batch():
    from saguaro.benchmark.harness import make_batches
    from saguaro.benchmark.prompt_suites import Prompt

    ps = [Prompt(id=f"p{i}", source="t", category="c", text=str(i), chat=False) for i in range(5)]
    out = make_batches(ps, [[i] for i in range(5)], 2)
    assert [[p.id for p in b[0]] for b in out] == [["p0", "p1"], ["p2", "p3"], ["p4"]]
    assert [b[1] for b in out] == [[[0], [1]], [[2], [3]], [[4]]]


def test_round_time_is_per_batched_round():
    s = {"token_ids": [1] * 8, "elapsed_s": 2.0, "ttft_s": 0.5, "first_tokens": 4,
         "metrics": {"engine_delta": {"rounds": 8.0, "batched_rounds": 2.0, "round_s": 1.0, "target_verify_s": 0.8}}}
    f = stats.sample_figures(s)
    assert f["round_time_ms"] == 500.0 and f["verify_time_ms"] == 400.0


def test_the_agreement_reference_falls_back_to_the_first_saguaro_ar_row():
    from saguaro.benchmark.harness import reference_method

    assert reference_method("saguaro-ar-1t", ["saguaro-ar-1t", "saguaro-ar-2t"]) == "saguaro-ar-1t"
    # the llama.cpp comparison runs 2-thread rows only: its agreement is against saguaro's AR
    assert reference_method("saguaro-ar-1t", ["llamacpp-ar-2t", "saguaro-ar-2t", "saguaro-sd-2t"]) == "saguaro-ar-2t"
    assert reference_method("saguaro-ar-1t", ["llamacpp-ar-2t", "saguaro-ssd"]) is None
