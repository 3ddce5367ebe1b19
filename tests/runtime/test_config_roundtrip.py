"""The config boundary: SpeculationConfig → the runtime's RuntimeConfig → back, every field; one set of
defaults (the runtime's); one validator (the runtime's), reached from Python with its messages."""
from __future__ import annotations

import os
from dataclasses import fields

import pytest

from saguaro import _core
from saguaro.planned_defaults import PLANS
from saguaro.runtime import Runtime
from saguaro.speculation_config import SpeculationConfig, resolve_speculation

from tiny_adapter import TinyAdapter


def _every_field_changed() -> SpeculationConfig:
    """A config whose every field differs from its default (values exact in binary, so they round-trip)."""
    cores = sorted(os.sched_getaffinity(0))
    return SpeculationConfig(
        mode="sd", k=3, fanout_budget=7, fanout_kind="manual", fanout=[2, 1, 1, 3], fanout_after_miss=[1, 1, 1, 1],
        fanout_r=0.75, saguaro_c=0.5, backup="fast", backup_critical_batch=5, cache_policy="partial", strict=True,
        target_threads=2, draft_threads=3, target_cores=[cores[0]], draft_cores=[cores[-1]])


def test_every_field_differs_from_its_default_in_the_round_trip_config():
    changed, default = _every_field_changed(), SpeculationConfig()
    same = [f.name for f in fields(SpeculationConfig) if getattr(changed, f.name) == getattr(default, f.name)]
    assert same == []


def test_python_to_runtime_and_back_keeps_every_field():
    cfg = _every_field_changed()
    assert SpeculationConfig.from_runtime(cfg.to_runtime()) == cfg
    # and through a live runtime: what the C++ runtime runs with is what was asked for
    with Runtime(TinyAdapter(vocab_size=8), TinyAdapter(vocab_size=8, seed=1), cfg) as rt:
        assert SpeculationConfig.from_runtime(rt._rt.config) == cfg


def test_the_runtime_defaults_are_the_python_defaults():
    rc = _core.RuntimeConfig()
    assert SpeculationConfig.from_runtime(rc) == SpeculationConfig()
    assert (rc.k, rc.fanout_budget) == PLANS[("cpu", "bf16")]
    # a runtime built from the Python defaults runs the C++ defaults
    with Runtime(TinyAdapter(vocab_size=8), TinyAdapter(vocab_size=8, seed=1)) as rt:
        assert SpeculationConfig.from_runtime(rt._rt.config) == SpeculationConfig()
    # the fan-out schedule's binding takes the same default budget
    assert _core.FanoutSchedule(2).budget == rc.fanout_budget


@pytest.mark.parametrize("field, value, message", [
    ("mode", "fast", 'unknown mode "fast"'),
    ("k", 0, r"k \(draft tokens per round\) must be an integer in 1..64, got 0"),
    ("k", 65, r"k \(draft tokens per round\) must be an integer in 1..64, got 65"),
    ("k", "3", "k has the wrong type"),
    ("k", True, "k must not be a bool"),
    ("fanout_budget", 0, "fanout budget M must be an integer >= 1"),
    ("fanout_kind", "triangle", 'fanout_kind must be "geometric", "uniform" or "manual", got "triangle"'),
    ("fanout_r", 0.0, r"fanout_r \(the miss-rate exponent\) must be finite and > 0"),
    ("saguaro_c", 1.5, r"saguaro_c must be in \[0, 1\]"),
    ("backup", "slow", 'backup must be "jit"'),
    ("backup_critical_batch", 0, "backup_critical_batch must be an integer >= 1"),
    ("cache_policy", "always", 'cache_policy must be "wait", "partial" or "miss", got "always"'),
    ("target_threads", 0, "target_threads must be an integer >= 1, got 0"),
    ("draft_threads", -1, "draft_threads must be an integer >= 1, got -1"),
    ("draft_cores", [9999], "draft_cores must list CPU cores this process may use"),
])
def test_each_bad_field_gets_the_runtime_validators_message(field, value, message):
    with pytest.raises(ValueError, match=message):
        SpeculationConfig(**{field: value}).to_runtime()
    with pytest.raises(ValueError, match=message):
        Runtime(TinyAdapter(vocab_size=8), TinyAdapter(vocab_size=8, seed=1), SpeculationConfig(**{field: value}))


@pytest.mark.parametrize("kw, message", [
    (dict(k=4, fanout=[1, 2]), r"fanout must be k\+1 = 5 integers >= 0"),
    (dict(k=2, fanout=[0, 0, 0]), r"fanout must be k\+1 = 3 integers >= 0 .* with at least one > 0, got \[0, 0, 0\]"),
    (dict(k=2, fanout=[1, 1, 1], fanout_after_miss=[1, 1]), r"fanout_after_miss must be k\+1 = 3 integers"),
    (dict(fanout_kind="manual"), 'fanout_kind "manual" needs fanout'),
])
def test_fanout_lists_are_checked_against_k(kw, message):
    with pytest.raises(ValueError, match=message):
        resolve_speculation(**kw)


def test_shorthands_resolve_to_the_one_config():
    assert resolve_speculation(fanout=6).fanout_budget == 6
    cfg = resolve_speculation(k=2, fanout=[1, 0, 3])
    assert (cfg.fanout_kind, cfg.fanout) == ("manual", [1, 0, 3])
    # a budget after a manual list goes back to the geometric schedule
    assert resolve_speculation(cfg, fanout=5).fanout_kind == "geometric"
    assert resolve_speculation(fanout="uniform").fanout_kind == "uniform"
    with pytest.raises(ValueError, match="fanout must be a budget"):
        resolve_speculation(fanout="triangle")
    with pytest.raises(ValueError, match="speculation must be a saguaro.SpeculationConfig"):
        resolve_speculation({"k": 2})  # type: ignore[arg-type]
