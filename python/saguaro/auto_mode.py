"""``mode="auto"``: choose AR, SD or SSD, K, the fan-out budget and the threads for this machine and pair.

A short calibration on the loaded models measures what the planner measures (docs/measuring-speed.md):
the target's verification of 1..K+1 tokens and the draft's steps and tree steps, alone, with the other
model busy on the other core, and with two threads; then the target's greedy text on a few built-in
prompts and the rank of each of its tokens under the draft. The planner's speed model predicts the
tokens/s of every method of the standard comparison (AR and SD on one or two threads, SSD with the
draft on its own core). The predicted fastest then runs off against the best method of another family
through the runtime (``saguaro.auto_confirmation``): the speed model times each model alone, and in
the engine they ran slower. The measured faster one is used. The choice is cached per machine and
pair (in ``$SAGUARO_CACHE/auto``), so only the first engine of a pair on a machine pays the
calibration (under a minute for the default pair on two cores).

The choice assumes greedy decoding at batch 1 (the calibration is greedy); the output is exact in every
mode, only speed depends on it. Settings the caller gives (k, fanout, saguaro_c, ...) are kept.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from saguaro.planned_defaults import usable_cores
from saguaro.speculation_config import SpeculationConfig, resolve_speculation

#: bumped when the calibration or the choice changes, so stale cached choices are not reused
_VERSION = 2
#: the methods of the standard comparison, as the planner predicts them
METHODS = ("saguaro-ar-1t", "saguaro-ar-2t", "saguaro-sd-1t", "saguaro-sd-2t", "saguaro-ssd")
#: built-in calibration prompts: code and prose, as a default pair of coding models meets them
CALIBRATION_PROMPTS = (
    "def merge_sorted(a, b):\n    \"\"\"Merge two sorted lists into one sorted list.\"\"\"\n",
    "import json\n\n\ndef load_config(path):\n    \"\"\"Read a JSON configuration file and return a dict.\"\"\"\n",
    "Explain in two sentences why binary search needs a sorted array.",
    "class Stack:\n    \"\"\"A last-in, first-out stack backed by a Python list.\"\"\"\n\n    def __init__(self):\n",
)


@dataclass
class AutoChoice:
    """What ``mode="auto"`` chose and why."""

    #: the standard-comparison method chosen ("saguaro-sd-2t", ...)
    method: str
    #: the speculation settings the engine runs with
    config: SpeculationConfig
    #: the planner's predicted tokens/s of every method on this machine and pair
    predicted_tokens_per_s: dict[str, float]
    #: one sentence: the choice and the runner-up
    reason: str
    #: whether the choice came from the cache (no calibration this time)
    cached: bool = False
    #: seconds the calibration took (0 when cached)
    calibration_s: float = 0.0
    #: where the choice is cached
    cache_path: str = ""
    #: the planner's plan (acceptance, latencies, K, fan-out), for reports
    plan: dict = field(default_factory=dict, repr=False)
    #: the run-off's median measured decode tokens/s of each candidate (saguaro.auto_confirmation)
    measured_tokens_per_s: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        """JSON-able summary (for engine.metrics() and the CLI)."""
        return {"mode": self.config.mode, "method": self.method, "k": self.config.k,
                "fanout_budget": self.config.fanout_budget, "target_threads": self.config.target_threads,
                "draft_threads": self.config.draft_threads, "predicted_tokens_per_s": dict(self.predicted_tokens_per_s),
                "measured_tokens_per_s": dict(self.measured_tokens_per_s), "reason": self.reason, "cached": self.cached, "calibration_s": self.calibration_s,
                "cache_path": self.cache_path}


def machine_fingerprint() -> dict:
    """What makes speeds differ between machines: the CPU, its vector features, the cores, torch."""
    model, flags = platform.processor(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name.strip() == "model name":
                    model = value.strip()
                elif name.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:  # not Linux: the processor string alone
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_bf16")
    return {"cpu": model, "features": [f for f in wanted if f in flags], "cores": usable_cores(),
            "torch": torch.__version__}


def _pair_fingerprint(target: Any, draft: Any, options: dict) -> dict:
    def one(m: Any) -> dict:
        ad = m.adapter
        return {"name": str(m.name), "vocab": int(ad.vocab_size), "context": int(ad.max_context),
                "dtype": str(getattr(ad, "dtype", "")), "projections": _projection_kinds(ad)}

    return {"target": one(target), "draft": one(draft), "options": options}


def _projection_kinds(adapter: Any) -> list[str]:
    """The projection classes of a native model's first layer (Linear, QuantLinear, int8 forms): a
    quantized or int8 load of a model runs at another speed than its bf16 load."""
    layers = getattr(getattr(adapter, "model", None), "layers", None) or []
    kinds: set[str] = set()
    for block in vars(layers[0]).values() if layers else ():
        for part in [block, *getattr(block, "__dict__", {}).values()]:
            if type(part).__name__.endswith("Linear"):
                kinds.add(type(part).__name__)
    return sorted(kinds)


def _cache_path(key: dict) -> Path:
    from saguaro.models.model_store import cache_root

    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_root() / "auto" / f"{digest}.json"


# ------------------------------------------------------------------------------------ measurement
def _pin(cores: Sequence[int], threads: int) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(threading.get_native_id(), set(cores))
    torch.set_num_threads(threads)


def _median(xs: Sequence[float]) -> float:
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def _while_busy(probe: Any, what: str, arg: int, core: int, busy: threading.Event) -> threading.Thread:
    """A thread on ``core`` repeating a forward while ``busy``: the other model's load."""
    def run() -> None:
        _pin([core], 1)
        with torch.inference_mode():
            probe.loop(what, arg, busy)

    t = threading.Thread(target=run, name="saguaro-auto-load", daemon=True)
    busy.set()
    t.start()
    return t


def calibrate(target: Any, draft: Any, tokenizer: Any, *, k_max: int = 4, budgets: Sequence[int] = (2, 4, 8),
              reps: int = 3, calibration_tokens: int = 24) -> tuple[Any, list[int]]:
    """The planner's latencies and greedy ranks, measured in this process on loaded adapters."""
    from saguaro.benchmark import speed_model as sm
    from saguaro.benchmark.adapter_probe import AdapterProbe

    cores = usable_cores()
    a_core, b_core = cores[0], cores[1 % len(cores)]
    prompts = [tokenizer.encode(p) for p in CALIBRATION_PROMPTS]
    context = [t for p in prompts for t in p][:96]
    tp, dp = AdapterProbe(target), AdapterProbe(draft)
    old_threads = torch.get_num_threads()
    old_affinity = os.sched_getaffinity(threading.get_native_id()) if hasattr(os, "sched_getaffinity") else None
    busy = threading.Event()
    try:
        with torch.inference_mode():
            tp.set_context(context)
            dp.set_context(context)
            ns = range(1, k_max + 2)
            _pin([a_core], 1)
            tv = {n: _median(tp.time("extend", n, reps)) for n in ns}
            _pin([b_core], 1)
            d_step = _median(dp.time("extend", 1, reps * 2))
            d_ext = {n: _median(dp.time("extend", n, reps)) for n in ns}
            d_tree = {m: _median(dp.time("tree", m, reps)) for m in budgets}
            if len(cores) > 1:
                # contended: the draft builds trees on its core while the target verifies, and the reverse
                _pin([a_core], 1)
                load = _while_busy(dp, "tree", 6, b_core, busy)
                tv_c = {n: _median(tp.time("extend", n, reps)) for n in ns}
                busy.clear()
                load.join()
                _pin([b_core], 1)
                load = _while_busy(tp, "extend", 5, a_core, busy)
                d_ext_c = {n: _median(dp.time("extend", n, reps)) for n in ns}
                d_tree_c = {m: _median(dp.time("tree", m, reps)) for m in budgets}
                busy.clear()
                load.join()
                # two threads on both cores, each model alone
                _pin([a_core, b_core], 2)
                tv2 = {n: _median(tp.time("extend", n, reps)) for n in ns}
                d_step2 = _median(dp.time("extend", 1, reps * 2))
            else:  # one core: nothing runs beside anything; "two threads" is one
                tv_c, d_ext_c, d_tree_c, tv2, d_step2 = tv, d_ext, d_tree, tv, d_step
            # the ranks do not depend on the thread count (the kernels give the same bits on any), and
            # nothing else runs now: both cores (the target's 96 greedy tokens took 5.6 of the
            # default pair's 15 s of calibration on one)
            _pin(sorted({a_core, b_core}), len({a_core, b_core}))
            ranks: list[int] = []
            for prompt in prompts:
                cont, _ = tp.continue_text(prompt, calibration_tokens)
                r, _ = dp.score_text(prompt, cont)
                ranks += r
    finally:
        busy.clear()
        tp.close()
        dp.close()
        torch.set_num_threads(old_threads)
        if old_affinity is not None:
            os.sched_setaffinity(threading.get_native_id(), old_affinity)
    lat = sm.Latencies(target_verify=tv, target_verify_2t=tv2, target_verify_contended=tv_c, draft_step=d_step,
                       draft_step_2t=d_step2, draft_extend=d_ext, draft_extend_contended=d_ext_c,
                       draft_tree=d_tree, draft_tree_contended=d_tree_c,
                       extra={"context_tokens": len(context), "reps": reps, "in_process": True})
    return lat, ranks


# ------------------------------------------------------------------------------------ the choice
def config_for(method: str, plan: dict, base: SpeculationConfig, fixed: Sequence[str]) -> SpeculationConfig:
    """The speculation settings that run ``method`` as the standard comparison does (threads, cores,
    K, fan-out), keeping every field named in ``fixed`` (the caller's own settings) as it is in base."""
    cores = usable_cores()
    a, b = cores[0], cores[1 % len(cores)]
    both = sorted({a, b})
    threads = len(both)
    chosen: dict[str, Any] = {
        "saguaro-ar-1t": dict(mode="ar", target_threads=1, target_cores=[a]),
        "saguaro-ar-2t": dict(mode="ar", target_threads=threads, target_cores=both),
        "saguaro-sd-1t": dict(mode="sd", k=plan["sd_k_1t"], target_threads=1, draft_threads=1,
                              target_cores=[a], draft_cores=[a]),
        "saguaro-sd-2t": dict(mode="sd", k=plan["sd_k_2t"], target_threads=threads, draft_threads=threads,
                              target_cores=both, draft_cores=both),
        "saguaro-ssd": dict(mode="ssd", k=plan["k"], fanout_kind="geometric", fanout=None,
                            fanout_budget=plan["fanout_budget"], fanout_r=float(plan["fanout_r"]),
                            saguaro_c=float(plan["saguaro_c"]), target_threads=1, draft_threads=1,
                            target_cores=[a], draft_cores=[b]),
    }[method]
    kept = {name: value for name, value in chosen.items() if name not in fixed}
    return resolve_speculation(replace(base, **kept))


def _reason(method: str, predicted: dict[str, float], runoff: dict) -> str:
    short = lambda m: m.removeprefix("saguaro-")  # noqa: E731
    ranked = sorted(predicted.items(), key=lambda kv: -kv[1])
    fastest = ranked[0][0]
    rest = ", ".join(f"{short(m)} {v:.1f}" for m, v in ranked[1:])
    said = f"{short(fastest)} predicted fastest at {predicted[fastest]:.1f} tokens/s (greedy, batch 1; {rest})"
    measured = runoff.get("measured", {})
    if len(measured) < 2:
        return said
    ran = " against ".join(f"{short(m)} {measured[m]:.1f}" for m in runoff["methods"])
    return f"{short(method)} chosen: {said}; measured {ran} tokens/s"


def _run_off(target: Any, draft: Any, tokenizer: Any, plan: dict, base: SpeculationConfig, fixed: Sequence[str],
             predicted: dict[str, float]) -> dict:
    """The run-off of the predicted fastest against its rival (saguaro.auto_confirmation), as cached."""
    from saguaro import auto_confirmation as ac
    from saguaro.runtime import Runtime

    methods = ac.candidates(predicted)

    def make_runtime(method: str) -> Any:
        config = config_for(method, plan, base, fixed)
        return Runtime(target.adapter, draft.adapter if config.mode != "ar" else None, config)

    prompts = [tokenizer.encode(p) for p in CALIBRATION_PROMPTS]
    rates = ac.run_off(methods, make_runtime, prompts)
    chosen, ratio = ac.decide(methods, rates)
    return {"methods": methods, "rates": rates, "ratio": ratio, "chosen": chosen,
            "measured": {m: _median(r) for m, r in rates.items() if r}}


def _predicted(plan: dict) -> dict[str, float]:
    return {m: float(plan["predicted"][m]) for m in METHODS}


def choose(target: Any, draft: Any, tokenizer: Any, base: SpeculationConfig, *, fixed: Sequence[str] = (),
           options: Optional[dict] = None, use_cache: bool = True) -> AutoChoice:
    """Calibrate (or read the cached calibration) and choose the fastest method for this pair here.

    ``target``/``draft``: loaded models (``saguaro.models.LoadedModel``). ``base``: the resolved settings;
    the fields named in ``fixed`` are the caller's and stay as they are. ``options``: what else changes
    the draft's speed (draft_int8, draft_vocab), part of the cache key.
    """
    from saguaro.benchmark import planner

    fixed_values = {name: getattr(base, name) for name in sorted(fixed)}
    key = {"version": _VERSION, "machine": machine_fingerprint(),
           "pair": _pair_fingerprint(target, draft, options or {}), "fixed": fixed_values}
    path = _cache_path(key)
    plan, runoff, cached, took = None, {}, False, 0.0
    if use_cache and path.exists():
        try:
            stored = json.loads(path.read_text())
            if stored.get("key") == json.loads(json.dumps(key)):
                plan, runoff, cached = stored["plan"], stored["runoff"], True
        except (OSError, ValueError, KeyError):
            plan = None  # unreadable: calibrate again and overwrite
    if plan is None:
        t0 = time.perf_counter()
        k_max = int(base.k) if "k" in fixed else 4
        lat, ranks = calibrate(target.adapter, draft.adapter, tokenizer, k_max=k_max)
        ks = [int(base.k)] if "k" in fixed else range(1, k_max + 1)
        plan = planner.make_plan(lat, ranks, k_range=ks)
        runoff = _run_off(target, draft, tokenizer, plan, base, fixed, _predicted(plan))
        took = time.perf_counter() - t0
        if use_cache:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"key": key, "plan": plan, "runoff": runoff, "calibration_s": took}, indent=1))
            tmp.replace(path)
    predicted = _predicted(plan)
    method = runoff["chosen"]
    return AutoChoice(method=method, config=config_for(method, plan, base, fixed), predicted_tokens_per_s=predicted,
                      reason=_reason(method, predicted, runoff), cached=cached, calibration_s=round(took, 2),
                      cache_path=str(path), plan=plan, measured_tokens_per_s=dict(runoff["measured"]))


def describe(choice: Optional[AutoChoice]) -> dict:
    """engine.metrics()["auto"]: the choice as a dict, or {} when the mode was given."""
    return choice.as_dict() if choice is not None else {}


__all__ = ["AutoChoice", "CALIBRATION_PROMPTS", "METHODS", "calibrate", "choose", "config_for",
           "machine_fingerprint", "describe"]
