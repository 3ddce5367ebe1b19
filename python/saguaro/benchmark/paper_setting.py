"""The speed model fed the paper's setting: a prediction of its Qwen3-32B / Qwen3-0.6B row.

The paper (docs/algorithm.md §6; ssd-algorithm.md §6) reports, greedy, batch 1, the target on 4×H100
and SSD's draft on one more H100: AR 88.8, SD 136.8, SSD 203.8 tokens/s. This module runs
``speed_model`` (docs/algorithm.md §5) on that setting and reports each figure's error. Nothing here is
fitted to the SD or SSD figures; §6 states neither latencies nor acceptance, so these are the inputs,
each stated:

- **Target step** v = 1 / 88.8 s, the AR row itself: it is an input, so AR's "prediction" is exact by
  construction and is not a test of the model.
- **Verification of K+1 tokens** = v (``verify_ratio`` 1.0): at batch 1 a forward of 5 tokens reads
  the same weights as one of 1 token, and a 32B target on H100s is memory-bound there.
- **K = 4, F = 3 at each of the K+1 positions** (M = 15): the public reproduction's best shape for this
  pair (docs/algorithm.md §2.1).
- **Draft step** d = v / (K+1): K+1 draft forwards per round (trunk + K tree steps) fit exactly into
  one verification. That is what makes K = 4 the best K (docs/algorithm.md §2.1: "K and the fan-out
  are bounded by how many draft steps fit into one verification"), so this reads the draft's speed off
  the paper's chosen shape, not off its tokens/s. The trunk (K+1 tokens) and a tree step of M = 15
  branches cost one draft step each (memory-bound at these sizes), and a jit backup costs K of them.
- **Acceptance a = 0.80** (per token, greedy): not in §6. The value is this project's own greedy
  measurement of a same-vendor pair with a 3x smaller draft (Qwen2.5-Coder 1.5B / 0.5B, the planner
  of bench/results/auto-vs-standard-greedy-b1: 0.802). The Qwen3 pair's is unknown; ``sensitivity``
  shows how the prediction moves with it.
- **Hit rate h = 0.90**: §6's "bonus-token prediction accuracy up to about 90% at low temperature".
- Target and draft on separate GPUs: no contention (the contended latencies equal the lone ones).

``implied_acceptance`` (a diagnostic, not used by the prediction) is the a at which the SD prediction
would equal the paper's SD row under the same latencies.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from saguaro.benchmark.speed_model import Latencies, ar_speed, sd_speed, ssd_predict_at_hit_rate

#: docs/algorithm.md §6, Qwen3-32B / Qwen3-0.6B, greedy, batch 1, target 4×H100, SSD +1 H100 (tokens/s)
PAPER_ROW: dict[str, float] = {"ar": 88.8, "sd": 136.8, "ssd": 203.8}


@dataclass(frozen=True)
class PaperSetting:
    """The inputs of the prediction (see the module docstring for where each comes from)."""

    ar_tokens_per_s: float = PAPER_ROW["ar"]
    k: int = 4
    fanout: tuple[int, ...] = (3, 3, 3, 3, 3)
    verify_ratio: float = 1.0
    draft_steps_per_verify: float = 5.0   # d = v / this (K+1: the tree just fits a verification)
    acceptance: float = 0.80
    hit_rate: float = 0.90
    notes: tuple[str, ...] = field(default=(
        "v = 1/AR (input)", "verify(K+1) = v", "K = 4, F = 3 x 5 (public reproduction's best)",
        "draft step = v/(K+1)", "a = 0.80 (this project's greedy Qwen2.5-Coder 1.5B/0.5B, assumed)",
        "h = 0.90 (paper: bonus prediction up to ~90%)"))

    def latencies(self) -> Latencies:
        """The speed model's latency record for this setting (seconds)."""
        v = 1.0 / self.ar_tokens_per_s
        n = self.k + 1
        vk = v * self.verify_ratio
        d = v / self.draft_steps_per_verify
        m = sum(self.fanout)
        verify = {1: v, n: vk}
        return Latencies(target_verify=dict(verify), target_verify_2t=dict(verify),
                         target_verify_contended=dict(verify), draft_step=d, draft_step_2t=d,
                         draft_extend={n: d}, draft_extend_contended={n: d}, draft_tree={m: d},
                         draft_tree_contended={m: d})


def predict(setting: PaperSetting = PaperSetting()) -> dict[str, Any]:
    """Predicted AR / SD / SSD tokens/s beside the paper's row, with each error (predicted / paper - 1)."""
    lat = setting.latencies()
    pred = {"ar": ar_speed(lat), "sd": sd_speed(lat, setting.acceptance, setting.k),
            "ssd": ssd_predict_at_hit_rate(lat, setting.acceptance, setting.k, list(setting.fanout),
                                           setting.hit_rate).tokens_per_s}
    pred["ssd/sd"] = pred["ssd"] / pred["sd"]
    paper = dict(PAPER_ROW, **{"ssd/sd": PAPER_ROW["ssd"] / PAPER_ROW["sd"]})
    return {"setting": asdict(setting), "predicted": pred, "paper": paper,
            "error": {key: pred[key] / paper[key] - 1.0 for key in pred},
            "ar_is_input": True, "implied_acceptance": implied_acceptance(setting)}


def implied_acceptance(setting: PaperSetting = PaperSetting()) -> float:
    """The a at which the SD prediction equals the paper's SD row (bisection; a diagnostic only)."""
    lat = setting.latencies()
    lo, hi = 0.0, 0.999999
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if sd_speed(lat, mid, setting.k) < PAPER_ROW["sd"] else (lo, mid)
    return 0.5 * (lo + hi)


def sensitivity(acceptances: tuple[float, ...] = (0.6, 0.7, 0.8, 0.9),
                draft_steps: tuple[float, ...] = (2.5, 5.0, 10.0)) -> list[dict[str, float]]:
    """SD and SSD predictions over acceptance a and draft steps per verification (how the stated
    assumptions move the result)."""
    rows = []
    for a in acceptances:
        for s in draft_steps:
            p = predict(replace(PaperSetting(), acceptance=a, draft_steps_per_verify=s))["predicted"]
            rows.append({"acceptance": a, "draft_steps_per_verify": s, "sd": p["sd"], "ssd": p["ssd"],
                         "ssd/sd": p["ssd/sd"]})
    return rows


def markdown(result: dict[str, Any]) -> str:
    """The prediction as a small Markdown table."""
    lines = ["| figure | paper (4+1 H100) | predicted | error |", "|---|---|---|---|"]
    for key in ("ar", "sd", "ssd", "ssd/sd"):
        fmt = "{:.2f}" if "/" in key else "{:.1f}"
        note = " (input)" if key == "ar" else ""
        lines.append(f"| {key.upper()}{note} | {fmt.format(result['paper'][key])} | "
                     f"{fmt.format(result['predicted'][key])} | {result['error'][key]:+.1%} |")
    s = result["setting"]
    lines += ["", f"Inputs: {'; '.join(s['notes'])}. The SD row would need a = "
              f"{result['implied_acceptance']:.3f} under the same latencies (diagnostic, not used)."]
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(predict()))
