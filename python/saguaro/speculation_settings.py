"""Speculation settings: a SpeculationConfig with the user's overrides, validated (ValueError says
what to fix)."""
from __future__ import annotations

import os
from dataclasses import replace
from typing import Any, Optional, Sequence

from saguaro.config import SpeculationConfig

_MODES = ("ar", "sd", "ssd")
_BACKUPS = ("jit", "fast", "auto")
_CACHE_POLICIES = ("wait", "partial", "miss")
_FANOUT_KINDS = ("geometric", "uniform", "manual")

def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_cores(name: str, cores: Optional[Sequence[int]]) -> Optional[list[int]]:
    if cores is None:
        return None
    if isinstance(cores, int) and not isinstance(cores, bool):
        cores = [cores]
    try:
        available = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        available = list(range(os.cpu_count() or 1))
    out = list(cores)
    for c in out:
        if not _is_int(c) or c not in available:
            raise ValueError(f"{name} must list CPU cores this process may use {available}, got {c!r}")
    return out


def resolve_speculation(base: Optional[SpeculationConfig] = None, **overrides: Any) -> SpeculationConfig:
    """A validated SpeculationConfig: ``base`` (or the defaults) with the non-None overrides applied.

    ``fanout`` may be a budget M (int: spread over positions by ``fanout_kind``) or a list
    F_0..F_K (manual). Every bad value raises ValueError saying what to fix.
    """
    if base is not None and not isinstance(base, SpeculationConfig):
        raise ValueError(f"speculation must be a saguaro.config.SpeculationConfig, got {type(base).__name__}")
    cfg = replace(base) if base is not None else SpeculationConfig()
    fanout = overrides.pop("fanout", None)
    for name, value in overrides.items():
        if value is not None:
            setattr(cfg, name, value)
    if fanout is not None:
        if isinstance(fanout, str):
            if fanout not in ("geometric", "uniform"):
                raise ValueError(f"fanout must be a budget (int >= 1), a list F_0..F_k or 'geometric'/'uniform', "
                                 f"got {fanout!r}")
            cfg.fanout_kind = fanout
        elif _is_int(fanout):
            cfg.fanout_budget = fanout
            if cfg.fanout_kind == "manual":
                cfg.fanout_kind = "geometric"
        else:
            cfg.fanout = list(fanout)
            cfg.fanout_kind = "manual"

    if cfg.mode not in _MODES:
        raise ValueError(f"unknown mode {cfg.mode!r}: use 'ssd' (speculative speculative decoding), "
                         f"'sd' (speculative decoding) or 'ar' (target only)")
    if not _is_int(cfg.k) or cfg.k < 1:
        raise ValueError(f"k (draft tokens per round) must be an integer >= 1, got {cfg.k!r}")
    if not isinstance(cfg.saguaro_c, (int, float)) or isinstance(cfg.saguaro_c, bool) or not 0.0 <= cfg.saguaro_c <= 1.0:
        raise ValueError(f"saguaro_c must be in [0, 1] (1 = plain speculative sampling), got {cfg.saguaro_c!r}")
    cfg.saguaro_c = float(cfg.saguaro_c)
    if cfg.fanout_kind not in _FANOUT_KINDS:
        raise ValueError(f"fanout_kind must be one of {_FANOUT_KINDS}, got {cfg.fanout_kind!r}")
    if not _is_int(cfg.fanout_budget) or cfg.fanout_budget < 1:
        raise ValueError(f"fanout budget must be an integer >= 1 (branches per sequence), got {cfg.fanout_budget!r}")
    for name in ("fanout", "fanout_after_miss"):
        lst = getattr(cfg, name)
        if lst is None:
            if name == "fanout" and cfg.fanout_kind == "manual":
                raise ValueError("fanout_kind 'manual' needs fanout=[F_0, ..., F_k] (k+1 integers >= 0)")
            continue
        lst = list(lst)
        if len(lst) != cfg.k + 1 or not all(_is_int(f) and f >= 0 for f in lst) or sum(lst) < 1:
            raise ValueError(f"{name} must be k+1 = {cfg.k + 1} integers >= 0 (branches at positions 0..k) "
                             f"with at least one > 0, got {lst!r}")
        setattr(cfg, name, lst)
    if not isinstance(cfg.fanout_r, (int, float)) or not cfg.fanout_r > 0:
        raise ValueError(f"fanout_r must be > 0, got {cfg.fanout_r!r}")
    if cfg.backup not in _BACKUPS:
        raise ValueError(f"backup must be 'jit' (draft decodes on a miss), 'fast' (n-gram proposal) or 'auto', "
                         f"got {cfg.backup!r}")
    if cfg.backup_critical_batch is not None and (not _is_int(cfg.backup_critical_batch) or cfg.backup_critical_batch < 1):
        raise ValueError(f"backup_critical_batch must be None or an integer >= 1, got {cfg.backup_critical_batch!r}")
    if cfg.cache_policy not in _CACHE_POLICIES:
        raise ValueError(f"cache_policy must be one of {_CACHE_POLICIES}, got {cfg.cache_policy!r}")
    for name in ("target_threads", "draft_threads"):
        v = getattr(cfg, name)
        if not _is_int(v) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    cfg.target_cores = _check_cores("target_cores", cfg.target_cores)
    cfg.draft_cores = _check_cores("draft_cores", cfg.draft_cores)
    return cfg
