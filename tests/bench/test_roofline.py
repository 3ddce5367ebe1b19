"""bench/roofline.py and the two core measurements it stands on."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from saguaro.kernels.small_gemm import available, core

ROOT = Path(__file__).resolve().parents[2]


def _roofline_module():
    spec = importlib.util.spec_from_file_location("bench_roofline", ROOT / "bench" / "roofline.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(not available(), reason="no AVX2+FMA on this CPU")
def test_core_measurements_return_rates():
    c = core()
    assert c.small_gemm_fma_peak(0.01) > 0
    t = c.small_gemm_time_packed(5, 32, 64, 3, 1)
    assert math.isfinite(t) and t > 0


@pytest.mark.parametrize("call,match", [
    (lambda c: c.small_gemm_fma_peak(0.0), "seconds"),
    (lambda c: c.small_gemm_fma_peak(11.0), "seconds"),
    (lambda c: c.small_gemm_time_packed(0, 16, 16, 3, 1), "M, N and K"),
    (lambda c: c.small_gemm_time_packed(1, 16, 0, 3, 1), "M, N and K"),
    (lambda c: c.small_gemm_time_packed(1, 16, 16, 0, 1), "reps"),
    (lambda c: c.small_gemm_time_packed(1, 16, 16, 3, 0), "threads"),
])
def test_core_measurements_reject_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call(core())


def test_macs_per_row_match_the_forward_profiles_count():
    # bench/forward_profile.py counts the 1.5B's projections from the loaded model: 1,543,569,408
    assert _roofline_module().macs_per_row("qwen2.5-coder-1.5b") == 1_543_569_408


@pytest.mark.skipif(not available(), reason="no AVX2+FMA on this CPU")
def test_script_writes_json_and_markdown_with_every_floor(tmp_path):
    out = tmp_path / "roofline"
    _roofline_module().main(["--reps", "3", "--rounds", "1", "--streamed", "256,512", "--out", str(out)])
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["fma_peak_macs_per_s"] > 0
    assert set(data["floors"]) == {"qwen2.5-coder-1.5b x5", "qwen2.5-coder-0.5b x8", "qwen2.5-coder-0.5b x16"}
    for f in data["floors"].values():
        assert f["least_ratio"] == pytest.approx(f["rows_floor_ms"] / f["decode_floor_ms"])
    md = out.with_suffix(".md").read_text()
    assert "FMA peak" in md and "least ratio" in md
