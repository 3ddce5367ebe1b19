"""The speculation shape (K, fan-out budget M) an Engine uses when the caller gives none: the planner's
choice in the committed benchmark runs of the default pair (bench/results/), per device and draft kind;
and the workers' threads when the caller gives none (``planned_threads``: every core is used).

The planner (saguaro.benchmark.planner) picks K and M from measured latencies and acceptance; these are
its picks on the project's reference CPU, so a default Engine runs the shape that was measured fastest
there. Another machine or model pair may plan differently: run ``saguaro bench --plan-only`` and pass
``k=`` / ``fanout=``.
"""
from __future__ import annotations

import os
from typing import Union

from saguaro import _core

_RUNTIME_DEFAULTS = _core.RuntimeConfig()

#: (k, fan-out budget) per (device kind, draft kind), with the runs that chose them
PLANS: dict[tuple[str, str], tuple[int, int]] = {
    # The runtime's own defaults (include/saguaro/runtime_config.hpp): the planner's choice in
    # quick-greedy-b1-tiles-full-2026-11-24 (16 prompts x 128 tokens, calibrated on all 16): K = 2,
    # fan-out [1, 1, 2].
    ("cpu", "bf16"): (_RUNTIME_DEFAULTS.k, _RUNTIME_DEFAULTS.fanout_budget),
    # quick-greedy-b1-int8dyn and its repeat: K = 2, fan-out [2, 2, 4]
    ("cpu", "int8"): (2, 8),
    # the GGUF files' quantized blocks (quantized=True, the default on SIMD CPUs):
    # llamacpp-vs-quantized-greedy-b1-icelake-planned and -zen4-planned both chose K = 1, fan-out [1, 3]
    ("cpu", "quantized"): (1, 4),
    # no SSD-loop benchmark on a GPU yet: the public reproduction's best K = 4 (docs/algorithm.md §2.1)
    ("cuda", "bf16"): (4, 6),
}


def planned_shape(device: str, draft_int8: Union[bool, str, None] = False, quantized: bool = False) -> tuple[int, int]:
    """(k, fanout budget) for a draft on ``device`` ("cpu", "cuda", "cuda:1", ...): an int8 draft, else a
    draft on GGUF blocks (``quantized``), else a bf16 one; int8 and quantized drafts are CPU-only."""
    kind = "cuda" if str(device).startswith("cuda") else "cpu"
    draft = "int8" if draft_int8 else ("quantized" if quantized else "bf16")
    return PLANS.get((kind, draft)) or PLANS[(kind, "bf16")]


def usable_cores() -> list[int]:
    """The cores this process may run on, sorted (its affinity mask; all of them where there is none)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def planned_threads(mode: str, device: str, cores: int | None = None) -> tuple[int, int]:
    """(target_threads, draft_threads) for ``mode`` on ``device`` when the caller gives none.

    On the CPU every usable core works: in ar and sd the workers never compute at the same time, so
    each gets all the cores; in ssd they do, so the cores are split (the target gets the larger half,
    and the runtime lends it the draft's while the draft has no work: plain rounds under load). On a
    GPU the host threads only launch kernels: one each.
    """
    if str(device).startswith("cuda"):
        return 1, 1
    n = max(1, cores if cores is not None else len(usable_cores()))
    if mode == "ssd":
        return max(1, n - n // 2), max(1, n // 2)
    return n, n
