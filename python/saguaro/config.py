"""Plain configuration records shared by the API and the runtime (validated by the API layer)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional, Sequence, Union

from saguaro.planned_defaults import PLANS

Mode = Literal["ar", "sd", "ssd"]
Backup = Literal["jit", "fast", "auto"]
CachePolicy = Literal["wait", "partial", "miss"]
FanoutKind = Literal["geometric", "uniform", "manual"]


@dataclass
class SpeculationConfig:
    """How the engine speculates. K and the fan-out budget default to the planner's choice for the default
    pair with a bf16 draft on the reference CPU (saguaro.planned_defaults; an Engine given no config
    uses the choice for its device and draft kind)."""

    mode: Mode = "ssd"
    k: int = PLANS[("cpu", "bf16")][0]
    #: fan-out budget M (branches per sequence) for "geometric"/"uniform", ignored for "manual"
    fanout_budget: int = PLANS[("cpu", "bf16")][1]
    fanout_kind: FanoutKind = "geometric"
    #: manual F_0..F_K (length k+1) when fanout_kind == "manual"; also used after a miss if given
    fanout: Optional[Sequence[int]] = None
    fanout_after_miss: Optional[Sequence[int]] = None
    #: fitted exponent r of the miss-rate power law 1 - hit(F) ~ F^-r (ssd-algorithm.md §2.2)
    fanout_r: float = 1.0
    #: Saguaro constant C in [0, 1]; 1 is plain speculative sampling
    saguaro_c: float = 1.0
    backup: Backup = "auto"
    #: batch size from which the fast backup replaces the neural one under backup="auto";
    #: None: computed from the measured hit rate and latencies
    backup_critical_batch: Optional[int] = None
    cache_policy: CachePolicy = "wait"
    #: raise instead of finishing requests autoregressively when the draft worker fails
    strict: bool = False
    target_threads: int = 1
    draft_threads: int = 1
    target_cores: Optional[Sequence[int]] = None
    draft_cores: Optional[Sequence[int]] = None


@dataclass
class RequestParams:
    """One request's limits and sampling, in the runtime's plain terms."""

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    max_new_tokens: int = 128
    stop_token_ids: Sequence[int] = field(default_factory=list)
    seed: int = 0
    stream: int = 0


ModelSpec = Union[str, object]
