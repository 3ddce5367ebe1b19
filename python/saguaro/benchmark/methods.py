"""The methods a benchmark compares (one table row each) and how they are pinned to cores."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Literal, Optional, Sequence, Union

from saguaro.planned_defaults import usable_cores
from saguaro.speculation_config import SpeculationConfig

Family = Literal["saguaro", "transformers", "llama.cpp"]


@dataclass(frozen=True)
class MethodSpec:
    """One row of the comparison.

    ``family`` saguaro runs ``saguaro.Engine``; transformers runs ``model.generate()`` (target only,
    or with ``assistant_model=`` when ``mode`` is "sd"). ``cores`` is the CPU set the whole method
    may use; target/draft cores say where each model's worker is pinned (SSD: one core each).
    Methods with the same ``worker`` share one worker process (and its loaded weights): every saguaro
    row shares one (each row is its own Engine whose target/draft threads pin themselves to the row's
    cores and set their own torch thread count), the transformers peers another.
    """

    name: str
    family: Family
    #: "auto": the engine chooses mode, K, fan-out and threads itself (saguaro.auto_mode)
    mode: Literal["ar", "sd", "ssd", "auto"]
    target_threads: int = 1
    draft_threads: int = 1
    target_cores: tuple[int, ...] = (0,)
    draft_cores: tuple[int, ...] = (0,)
    k: Optional[int] = None
    fanout: Union[int, tuple[int, ...], None] = None
    fanout_r: Optional[float] = None
    saguaro_c: Optional[float] = None
    backup: Optional[str] = None
    worker: str = ""
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def cores(self) -> tuple[int, ...]:
        """Every core the method may use (its process is pinned to these)."""
        if self.mode == "ar":
            return tuple(sorted(set(self.target_cores)))
        return tuple(sorted(set(self.target_cores) | set(self.draft_cores)))

    @property
    def uses_draft(self) -> bool:
        """Whether the method needs the draft model."""
        return self.mode != "ar"

    @property
    def threads(self) -> int:
        """Intra-op threads of the busiest model (what the row's label says)."""
        return max(self.target_threads, self.draft_threads if self.uses_draft else 0)

    def to_dict(self) -> dict:
        """JSON-ready configuration."""
        d = asdict(self)
        d["cores"] = list(self.cores)
        return d


def available_cores() -> list[int]:
    """The cores this process may run on, sorted (``saguaro.planned_defaults.usable_cores``)."""
    return usable_cores()


def _pair(cores: Optional[Sequence[int]]) -> tuple[int, int]:
    cs = list(cores) if cores is not None else available_cores()
    if len(cs) < 2:
        raise ValueError(f"the standard comparison needs two cores (SSD puts target and draft on one each); "
                         f"this process may use only {cs}")
    return cs[0], cs[1]


def standard_methods(*, k: Optional[int] = None, fanout: Union[int, Sequence[int], None] = None,
                     saguaro_c: Optional[float] = None, backup: str = "jit", fanout_r: Optional[float] = None,
                     cores: Optional[Sequence[int]] = None) -> list[MethodSpec]:
    """Every row of the standard CPU comparison (docs/measuring-speed.md), in table order.

    K, the fan-out and C left out are SpeculationConfig's defaults; the backup is jit unless given (a
    hit or a neural backup every round: the rows measure the draft, not the n-gram fallback).
    """
    defaults = SpeculationConfig()
    k = defaults.k if k is None else k
    fanout = defaults.fanout_budget if fanout is None else fanout
    saguaro_c = defaults.saguaro_c if saguaro_c is None else saguaro_c
    a, b = _pair(cores)
    both = (a, b)
    fan = tuple(fanout) if isinstance(fanout, (list, tuple)) else int(fanout)
    return [
        MethodSpec("saguaro-ar-1t", "saguaro", "ar", 1, 1, (a,), (a,), worker="saguaro"),
        MethodSpec("saguaro-ar-2t", "saguaro", "ar", 2, 2, both, both, worker="saguaro"),
        MethodSpec("saguaro-sd-1t", "saguaro", "sd", 1, 1, (a,), (a,), k=k, worker="saguaro"),
        MethodSpec("saguaro-sd-2t", "saguaro", "sd", 2, 2, both, both, k=k, worker="saguaro"),
        MethodSpec("saguaro-ssd", "saguaro", "ssd", 1, 1, (a,), (b,), k=k, fanout=fan, fanout_r=fanout_r,
                   saguaro_c=saguaro_c, backup=backup, worker="saguaro"),
        # what a user gets from Engine(mode="auto") / the CLI's default: must match the fastest row above
        MethodSpec("saguaro-auto", "saguaro", "auto", 2, 2, both, both, worker="saguaro"),
        MethodSpec("transformers-ar-2t", "transformers", "ar", 2, 2, both, both, worker="transformers"),
        MethodSpec("transformers-assisted-2t", "transformers", "sd", 2, 2, both, both, worker="transformers"),
    ]


def llamacpp_methods(*, draft_max: Sequence[int] = (4, 8), cores: Optional[Sequence[int]] = None) -> list[MethodSpec]:
    """llama.cpp's rows on the same two cores: plain decoding and its speculative decoding with the same
    draft at each draft-max (saguaro.benchmark.llamacpp_peer; k holds the draft-max)."""
    a, b = _pair(cores)
    both = (a, b)
    return [MethodSpec("llamacpp-ar-2t", "llama.cpp", "ar", 2, 2, both, both, worker="llama.cpp")] + [
        MethodSpec(f"llamacpp-sd-2t-d{d}", "llama.cpp", "sd", 2, 2, both, both, k=d, worker="llama.cpp")
        for d in draft_max]


def select(methods: Sequence[MethodSpec], names: Optional[Sequence[str]]) -> list[MethodSpec]:
    """The methods named (short names like ``ar-1t``/``ssd``/``hf-ar`` accepted), in table order."""
    if not names:
        return list(methods)
    aliases = {"hf-ar": "transformers-ar-2t", "hf-assisted": "transformers-assisted-2t",
               "assisted": "transformers-assisted-2t", "ssd": "saguaro-ssd"}
    wanted = []
    for n in names:
        full = aliases.get(n, n if n.startswith(("saguaro-", "transformers-", "llamacpp-")) else f"saguaro-{n}")
        if full not in {m.name for m in methods}:
            raise ValueError(f"unknown method {n!r}; choose from {[m.name for m in methods]} "
                             f"(short forms: ar-1t, ar-2t, sd-1t, sd-2t, ssd, auto, hf-ar, hf-assisted)")
        wanted.append(full)
    return [m for m in methods if m.name in wanted]


def with_ssd_plan(methods: Sequence[MethodSpec], *, k: int, fanout: Union[int, Sequence[int]],
                  saguaro_c: float, backup: str, fanout_r: Optional[float] = None,
                  sd_k: Union[int, dict, None] = None) -> list[MethodSpec]:
    """The methods with the planner's choice applied to the SSD row and K to the SD rows
    (``sd_k``: one K for every SD row, or a dict method name → K)."""
    fan = tuple(fanout) if isinstance(fanout, (list, tuple)) else int(fanout)
    out = []
    for m in methods:
        if m.family == "saguaro" and m.mode == "ssd":
            m = replace(m, k=k, fanout=fan, saguaro_c=saguaro_c, backup=backup, fanout_r=fanout_r)
        elif m.family == "saguaro" and m.mode == "sd" and sd_k is not None:
            k_row = sd_k.get(m.name) if isinstance(sd_k, dict) else sd_k
            if k_row is not None:
                m = replace(m, k=int(k_row))
        out.append(m)
    return out
