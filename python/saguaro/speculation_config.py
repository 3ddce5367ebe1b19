"""How the engine speculates: ``SpeculationConfig``, the Python face of the runtime's one config type.

The settings, their defaults and their validation are written once, in C++
(``include/saguaro/runtime_config.hpp``, bound as ``saguaro._core.RuntimeConfig``). This dataclass
takes its defaults from that type and converts to it (``to_runtime``, which validates) and back
(``from_runtime``); ``resolve_speculation`` adds the user-facing shorthands (``fanout=`` as a budget or
a list). The per-device shape an Engine picks when given none is in ``saguaro.planned_defaults``.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Literal, Optional, Sequence

from saguaro import _core

Mode = Literal["ar", "sd", "ssd"]
Backup = Literal["jit", "fast", "auto"]
CachePolicy = Literal["wait", "partial", "miss"]
FanoutKind = Literal["geometric", "uniform", "manual"]

_DEFAULTS = _core.RuntimeConfig()


@dataclass
class SpeculationConfig:
    """How the runtime speculates (every field is a field of ``saguaro._core.RuntimeConfig``).

    ``k``: draft tokens per round. ``fanout_budget``: branches per sequence M for the ``"geometric"`` and
    ``"uniform"`` fan-outs; ``fanout``: F_0..F_K for ``"manual"``; ``fanout_after_miss``: optional F_0..F_K
    for rounds whose speculation came from a backup. ``fanout_r``: initial exponent r of the miss-rate
    power law 1 - hit(F) ~ F^-r (docs/algorithm.md §2.2). ``saguaro_c``: the Saguaro constant C in
    [0, 1] (1 is plain speculative sampling). ``backup``: what a cache miss gets (``"jit"``: the draft
    decodes now, ``"fast"``: an n-gram proposal, ``"auto"``: jit below a critical batch size, fast
    from it on, and from a batch of two on plain rounds without speculation where the runtime measures
    them faster, and a lone request's first rounds plain right after such load, docs/algorithm.md §3);
    ``backup_critical_batch``: that batch size, None to compute it from measured rates. ``cache_policy``:
    what the target does when the tree is not finished at lookup. ``strict``: fail requests instead of
    finishing them autoregressively when the draft fails. Threads and cores per worker.
    """

    mode: Mode = _DEFAULTS.mode
    k: int = _DEFAULTS.k
    fanout_budget: int = _DEFAULTS.fanout_budget
    fanout_kind: FanoutKind = _DEFAULTS.fanout_kind
    fanout: Optional[Sequence[int]] = _DEFAULTS.fanout
    fanout_after_miss: Optional[Sequence[int]] = _DEFAULTS.fanout_after_miss
    fanout_r: float = _DEFAULTS.fanout_r
    saguaro_c: float = _DEFAULTS.saguaro_c
    backup: Backup = _DEFAULTS.backup
    backup_critical_batch: Optional[int] = _DEFAULTS.backup_critical_batch
    cache_policy: CachePolicy = _DEFAULTS.cache_policy
    strict: bool = _DEFAULTS.strict
    target_threads: int = _DEFAULTS.target_threads
    draft_threads: int = _DEFAULTS.draft_threads
    target_cores: Optional[Sequence[int]] = _DEFAULTS.target_cores
    draft_cores: Optional[Sequence[int]] = _DEFAULTS.draft_cores

    def to_runtime(self) -> Any:
        """The validated ``saguaro._core.RuntimeConfig``; ValueError names the field and what to fix."""
        rc = _core.RuntimeConfig()
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) and f.name != "strict":
                raise ValueError(f"{f.name} must not be a bool, got {value!r}")
            if f.name in ("fanout", "fanout_after_miss", "target_cores", "draft_cores") and value is not None:
                if isinstance(value, int) and not isinstance(value, bool) and f.name.endswith("cores"):
                    value = [value]
                value = list(value)
            try:
                setattr(rc, f.name, value)
            except TypeError:
                raise ValueError(f"{f.name} has the wrong type: got {value!r} "
                                 f"(expected like the default, {getattr(_DEFAULTS, f.name)!r})") from None
        rc.validate()
        return rc

    @classmethod
    def from_runtime(cls, rc: Any) -> "SpeculationConfig":
        """The SpeculationConfig of a ``saguaro._core.RuntimeConfig`` (e.g. ``runtime.config``)."""
        return cls(**{f.name: getattr(rc, f.name) for f in fields(cls)})


def resolve_speculation(base: Optional[SpeculationConfig] = None, **overrides: Any) -> SpeculationConfig:
    """A validated SpeculationConfig: ``base`` (or the defaults) with the non-None overrides applied.

    ``fanout`` may be a budget M (int: spread over positions by ``fanout_kind``), a list F_0..F_K
    (manual) or the name of a kind. Every bad value raises ValueError saying what to fix.
    """
    if base is not None and not isinstance(base, SpeculationConfig):
        raise ValueError(f"speculation must be a saguaro.SpeculationConfig, got {type(base).__name__}")
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
            cfg.fanout = None
        elif isinstance(fanout, int) and not isinstance(fanout, bool):
            cfg.fanout_budget = fanout
            if cfg.fanout_kind == "manual":
                cfg.fanout_kind = "geometric"
                cfg.fanout = None
        else:
            cfg.fanout = list(fanout)
            cfg.fanout_kind = "manual"
    return SpeculationConfig.from_runtime(cfg.to_runtime())
