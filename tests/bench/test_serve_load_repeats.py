"""bench/serve_load.py's repeated levels: medians of the runs, pooled latencies, paired ratios."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
serve_load = pytest.importorskip("bench.serve_load")


def _run(tok_s: float, ttft: list[float], gaps: list[float], tokens: int = 64, rounds: int = 60) -> dict:
    return {"concurrency": 4, "requests": len(ttft), "wall_s": tokens / tok_s, "requests_per_s": len(ttft) * tok_s / tokens,
            "tokens_per_s": tok_s, "_raw": {"ttft": ttft, "gaps": gaps, "tokens": tokens, "rounds": rounds,
                                            "proposed": 10, "accepted": 5}}


def test_merge_repeats_takes_the_median_run_and_pools_the_requests():
    runs = [_run(40.0, [0.1, 0.2], [0.05]), _run(50.0, [0.3, 0.4], [0.07]), _run(10.0, [0.5, 9.0], [0.06])]
    lv = serve_load.merge_repeats(runs)
    assert lv["tokens_per_s"] == 40.0 and lv["tokens_per_s_runs"] == [40.0, 50.0, 10.0]
    assert lv["repeats"] == 3 and lv["requests"] == 6
    assert lv["ttft_p50_s"] == pytest.approx(0.35)  # over all six requests
    assert lv["itl_p50_s"] == pytest.approx(0.06)
    assert lv["tokens_per_round"] == pytest.approx(192 / 180) and lv["acceptance_rate"] == pytest.approx(0.5)
    assert not any(k.startswith("_") for k in lv)


def test_paired_ratio_pairs_the_runs_of_one_repeat():
    a = {"tokens_per_s": 45.0, "tokens_per_s_runs": [45.0, 30.0, 47.0]}
    b = {"tokens_per_s": 46.0, "tokens_per_s_runs": [46.0, 30.0, 50.0]}  # a slow spell hit repeat 2 for both
    med, lo, hi = serve_load.paired_ratio(a, b)
    assert med == pytest.approx(45 / 46) and lo == pytest.approx(47 / 50) and hi == pytest.approx(1.0)
    single = serve_load.paired_ratio({"tokens_per_s": 3.0}, {"tokens_per_s": 4.0})
    assert single == (0.75, 0.75, 0.75)
