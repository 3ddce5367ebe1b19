"""bench/gpu.py --smoke: the whole GPU check on tiny shapes on the CPU, its JSON and its page."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(out: Path, *extra: str) -> dict:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), "--smoke", "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads((out / "gpu-check.json").read_text())


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("gpu")
    return _run(out), (out / "gpu-check.md").read_text()


def test_every_figure_is_there_and_says_it_was_replayed(smoke) -> None:
    res, page = smoke
    assert res["errors"] == {} and res["skipped"] == []
    assert res["replayed"] is True and "trace replay" in res["trace_replay"]
    assert "TRACE REPLAY" in page and "trace replay" in page
    for key in ("device", "torch", "cuda", "trace", "command"):
        assert key in res
    f = res["figures"]
    assert f["copy_bandwidth"]["bytes_per_s"] > 0
    assert {r["kernel"] for r in f["kernels"]} == {"verify_sampled", "verify_greedy", "fanout", "sample_rows",
                                                  "sample_greedy"}
    assert f["paper_prediction"]["paper"]["ssd"] == 203.8
    k = res["config"]["k"]
    for pair in ("tiny-qwen2", "tiny-qwen3"):
        lat = f[f"{pair}/latencies"]
        assert lat["target_decode_ms"] > 0 and lat["target_verify_ms"][str(k + 1)] > 0
        assert lat["draft_decode_ms"] > 0 and lat["draft_tree_ms"]["6"] > 0
        ar = f[f"{pair}/ar"]
        assert ar["replayed"] is False and ar["decode_tokens_per_s"] > 0 and ar["roofline_tokens_per_s"] > 0
        for run in ("sd", "ssd", "ssd_all_hits"):
            r = f[f"{pair}/{run}"]
            assert r["replayed"] is True and r["replay_realised"] is True, r.get("replay_problems")
            assert r["decode_tokens_per_s"] > 0 and r["generated_tokens"] == res["config"]["tokens"]
        assert f[f"{pair}/ssd_all_hits"]["cache_hit_rate"] == 1.0
        for run in ("ssd", "ssd_all_hits"):  # a round holds its verification
            assert f[f"{pair}/{run}"]["round_over_verify"] >= 0.999
        pred = f[f"{pair}/predictions"]
        for run in ("ar", "sd", "ssd", "ssd_all_hits"):
            assert pred[run]["predicted"] > 0 and pred[run]["error"] == pytest.approx(
                pred[run]["predicted"] / pred[run]["measured"] - 1)
        assert pair in page


def test_a_failing_figure_leaves_the_others(tmp_path) -> None:
    res = _run(tmp_path, "--tree-m", "0", "--no-kernels")  # a tree of 0 branches is refused by the adapter
    assert set(res["errors"]) == {"tiny-qwen2/latencies", "tiny-qwen3/latencies"}
    assert "ValueError" in res["errors"]["tiny-qwen2/latencies"]
    assert res["figures"]["tiny-qwen2/ssd"]["replay_realised"] is True
    assert "kernels" not in res["figures"]
    assert "Failed figures" in (tmp_path / "gpu-check.md").read_text()


def test_a_spent_budget_skips_the_rest_and_still_writes_the_report(tmp_path) -> None:
    res = _run(tmp_path, "--budget-s", "0")
    assert res["figures"] == {}
    assert res["skipped"] == ["paper_prediction", "copy_bandwidth", "kernels", "tiny-qwen2/build", "tiny-qwen3/build"]
    assert "Skipped" in (tmp_path / "gpu-check.md").read_text()
