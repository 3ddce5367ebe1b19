"""Per-method summaries (medians) and the ratios of the standard comparison, from one run's samples."""
from __future__ import annotations

import math
import statistics
from typing import Any, Iterable, Optional, Sequence

#: names the runtime may use for each per-request figure (first found wins)
METRIC_ALIASES: dict[str, tuple[str, ...]] = {
    "rounds": ("rounds", "num_rounds", "target_rounds"),
    "tokens_per_round": ("tokens_per_round", "mean_tokens_per_round", "accepted_per_round", "mean_accepted"),
    "accepted_histogram": ("accepted_histogram", "accept_histogram", "accepted_hist"),
    "hit_rate": ("cache_hit_rate", "hit_rate", "speculation_cache_hit_rate"),
    "hit_rate_per_position": ("hit_rate_per_position", "cache_hit_rate_per_position"),
    "round_time_s": ("mean_round_time_s", "round_time_s", "mean_round_s", "round_time"),
    "verify_time_s": ("mean_verify_time_s", "verify_time_s", "mean_verify_s", "verify_time"),
    "draft_tree_time_s": ("mean_draft_tree_time_s", "draft_tree_time_s", "draft_tree_s", "tree_time_s"),
    "fraction_hidden": ("fraction_draft_hidden", "draft_hidden_fraction", "fraction_hidden", "hidden_fraction"),
}

#: the figures of a table row, in order: (key, header, format)
ROW_FIGURES: tuple[tuple[str, str, str], ...] = (
    ("decode_tps", "decode tok/s", "{:.2f}"),
    ("e2e_tps", "end-to-end tok/s", "{:.2f}"),
    ("ttft_s", "TTFT s", "{:.2f}"),
    ("prompt_tps", "prompt tok/s", "{:.0f}"),
    ("tokens_per_round", "tokens/round", "{:.2f}"),
    ("hit_rate", "hit rate", "{:.0%}"),
    ("round_time_ms", "round ms", "{:.0f}"),
    ("verify_time_ms", "verify ms", "{:.0f}"),
    ("fraction_hidden", "draft hidden", "{:.0%}"),
    ("peak_rss_mib", "peak MiB", "{:.0f}"),
)


def _number(v: Any) -> Optional[float]:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return float(v) if math.isfinite(float(v)) else None
    if isinstance(v, (list, tuple)) and v and all(isinstance(x, (int, float)) for x in v):
        return float(statistics.fmean(v))
    return None


def metric(metrics: dict, key: str) -> Any:
    """A runtime figure under any of its known names (raw value), or None."""
    for name in METRIC_ALIASES.get(key, (key,)):
        if name in metrics:
            return metrics[name]
    return None


def sample_figures(sample: dict) -> dict:
    """Speed figures of one (method, prompt) sample: decode excludes the prefill and first token."""
    n = len(sample["token_ids"])
    elapsed = float(sample["elapsed_s"])
    ttft = _number(sample.get("ttft_s"))
    out: dict[str, Optional[float]] = {"tokens": float(n), "elapsed_s": elapsed, "ttft_s": ttft,
                                       "e2e_tps": n / elapsed if elapsed > 0 else None}
    # prompt processing as the user waits for it: the prompt's tokens over the time to the first token
    prompt_tokens = _number(sample.get("prompt_tokens"))
    out["prompt_tps"] = prompt_tokens / ttft if prompt_tokens and ttft else None
    decode_s = elapsed - ttft if ttft is not None else None
    out["decode_s"] = decode_s
    # tokens that arrived after the first token's moment (assisted generation delivers rounds)
    after_first = n - int(sample.get("first_tokens") or 1)
    out["decode_tps"] = after_first / decode_s if decode_s and decode_s > 0 and after_first > 0 else None
    m = sample.get("metrics") or {}
    delta = m.get("engine_delta") or {}
    rounds = _number(metric(m, "rounds"))
    tpr = _number(metric(m, "tokens_per_round"))
    if tpr is None and rounds:
        tpr = n / rounds
    out["rounds"] = rounds
    out["tokens_per_round"] = tpr
    out["hit_rate"] = _number(metric(m, "hit_rate"))
    if out["hit_rate"] is None:
        out["hit_rate"] = _ratio_of_sums(m.get("hits_per_position"), m.get("lookups_per_position"))
    rt = _number(metric(m, "round_time_s"))
    vt = _number(metric(m, "verify_time_s"))
    # a batched round serves every request of the batch: time per round is per batched round
    d_rounds = _delta(delta, "batched_rounds") or _delta(delta, "rounds")
    if rt is None and d_rounds:
        rt = _per(_delta(delta, "round_s"), d_rounds)
    if vt is None and d_rounds:
        vt = _per(_delta(delta, "target_verify_s"), d_rounds)
    out["round_time_ms"] = rt * 1e3 if rt is not None else None
    out["verify_time_ms"] = vt * 1e3 if vt is not None else None
    out["fraction_hidden"] = _number(metric(m, "fraction_hidden"))
    if out["fraction_hidden"] is None:
        hidden = _delta(delta, "draft_tree_hidden_s")
        work = (_delta(delta, "draft_tree_s") or 0.0) + (_delta(delta, "draft_chain_s") or 0.0)
        out["fraction_hidden"] = hidden / work if hidden is not None and work > 0 else None
    out["peak_rss_mib"] = _number(sample.get("peak_rss_mib"))
    return out


def _delta(delta: dict, name: str) -> Optional[float]:
    """An aggregate's change over the request, whether flattened at the top or under "totals."."""
    for key in (name, f"totals.{name}"):
        if key in delta:
            return float(delta[key])
    return None


def _per(total: Optional[float], count: Optional[float]) -> Optional[float]:
    return total / count if total is not None and count else None


def _ratio_of_sums(num: Any, den: Any) -> Optional[float]:
    if not isinstance(num, (list, tuple)) or not isinstance(den, (list, tuple)):
        return None
    d = sum(den)
    return sum(num) / d if d else None


def median(values: Iterable[Optional[float]]) -> Optional[float]:
    """Median of the values that exist, None if none."""
    vs = [v for v in values if v is not None]
    return statistics.median(vs) if vs else None


def agreement(tokens: Sequence[int], reference: Sequence[int]) -> float:
    """Fraction of the reference's tokens reproduced before the first difference."""
    n = 0
    for a, b in zip(tokens, reference):
        if a != b:
            break
        n += 1
    return n / max(len(reference), 1)


def summarize(samples: list[dict], method_names: Sequence[str], reference: Optional[str] = None) -> dict:
    """Per method: medians of the speed figures over prompts, means of the runtime's figures."""
    by_prompt_ref = {s["prompt_id"]: s["token_ids"] for s in samples if s["method"] == reference}
    out = {}
    for name in method_names:
        rows = [s for s in samples if s["method"] == name]
        figs = [sample_figures(s) for s in rows]
        summary: dict[str, Any] = {"n": len(rows)}
        for key in ("decode_tps", "e2e_tps", "ttft_s", "prompt_tps"):
            summary[key] = median(f[key] for f in figs)
        tokens = sum(f["tokens"] for f in figs)
        rounds = [f["rounds"] for f in figs]
        if rows and all(r for r in rounds):
            summary["tokens_per_round"] = tokens / sum(rounds)
        else:
            summary["tokens_per_round"] = median(f["tokens_per_round"] for f in figs)
        for key in ("hit_rate", "round_time_ms", "verify_time_ms", "fraction_hidden"):
            vs = [f[key] for f in figs if f[key] is not None]
            summary[key] = statistics.fmean(vs) if vs else None
        peaks = [f["peak_rss_mib"] for f in figs if f["peak_rss_mib"] is not None]
        summary["peak_rss_mib"] = max(peaks) if peaks else None
        if reference and by_prompt_ref and name != reference:
            ag = [agreement(s["token_ids"], by_prompt_ref[s["prompt_id"]]) for s in rows if s["prompt_id"] in by_prompt_ref]
            summary["agreement_with_reference"] = statistics.fmean(ag) if ag else None
        out[name] = summary
    return out


_SAGUARO_MODES = ("saguaro-ar-1t", "saguaro-ar-2t", "saguaro-sd-1t", "saguaro-sd-2t", "saguaro-ssd")
_LLAMACPP_MODES = ("llamacpp-ar-2t", "llamacpp-sd-2t-d4", "llamacpp-sd-2t-d8")

#: (label, numerator methods, denominator methods); the best (highest median decode tok/s) of each side
RATIO_SPECS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("SSD / best SD", ("saguaro-ssd",), ("saguaro-sd-1t", "saguaro-sd-2t")),
    ("SSD / best AR", ("saguaro-ssd",), ("saguaro-ar-1t", "saguaro-ar-2t")),
    ("SSD / AR 2-thread", ("saguaro-ssd",), ("saguaro-ar-2t",)),
    ("SSD / SD 1-thread", ("saguaro-ssd",), ("saguaro-sd-1t",)),
    ("SSD / SD 2-thread", ("saguaro-ssd",), ("saguaro-sd-2t",)),
    ("saguaro AR / transformers AR", ("saguaro-ar-2t",), ("transformers-ar-2t",)),
    ("saguaro SD / assisted", ("saguaro-sd-2t",), ("transformers-assisted-2t",)),
    ("SD 1-thread / AR 1-thread", ("saguaro-sd-1t",), ("saguaro-ar-1t",)),
    # mode="auto" against the fastest row it chooses among (it should be that row, within noise)
    ("auto / best saguaro mode", ("saguaro-auto",), _SAGUARO_MODES),
    ("saguaro AR / llama.cpp AR", ("saguaro-ar-2t",), ("llamacpp-ar-2t",)),
    ("best saguaro mode / best llama.cpp mode", _SAGUARO_MODES, _LLAMACPP_MODES),
)


def _best(summary: dict, names: Sequence[str]) -> Optional[str]:
    present = [n for n in names if n in summary and summary[n].get("decode_tps") is not None]
    return max(present, key=lambda n: summary[n]["decode_tps"]) if present else None


def paired_ratio(samples: list[dict], num: str, den: str) -> Optional[float]:
    """Median over prompts of the per-prompt decode tok/s ratio (robust to drift between prompts)."""
    a = {s["prompt_id"]: sample_figures(s)["decode_tps"] for s in samples if s["method"] == num}
    b = {s["prompt_id"]: sample_figures(s)["decode_tps"] for s in samples if s["method"] == den}
    rs = [a[p] / b[p] for p in a if p in b and a[p] and b[p]]
    return statistics.median(rs) if rs else None


def ratios(summary: dict, samples: list[dict]) -> list[dict]:
    """Every ratio of RATIO_SPECS whose methods ran (ratio of median decode tok/s, and paired)."""
    out = []
    for label, nums, dens in RATIO_SPECS:
        n, d = _best(summary, nums), _best(summary, dens)
        if n is None or d is None:
            out.append({"label": label, "numerator": n, "denominator": d, "value": None, "paired": None,
                        "why_missing": "a method of this ratio was not run"})
            continue
        out.append({"label": label, "numerator": n, "denominator": d,
                    "value": summary[n]["decode_tps"] / summary[d]["decode_tps"],
                    "paired": paired_ratio(samples, n, d)})
    ssd = summary.get("saguaro-ssd")
    if ssd and ssd.get("round_time_ms") and ssd.get("verify_time_ms"):
        out.append({"label": "SSD round time / verify time", "numerator": "saguaro-ssd", "denominator": "saguaro-ssd",
                    "value": ssd["round_time_ms"] / ssd["verify_time_ms"], "paired": None})
    return out
