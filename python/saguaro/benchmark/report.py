"""Write a run's results: JSON (every raw figure), a Markdown table and a PNG plot."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

from saguaro.benchmark.stats import ROW_FIGURES


def _draft_note(cfg: dict) -> str:
    """What the saguaro rows changed in their draft (a pruned vocabulary, int8), for the table's title."""
    parts = []
    n = cfg.get("draft_vocab")
    if n:
        parts.append(f"draft vocabulary pruned to ids < {n} + special + prompt tokens")
    q = cfg.get("draft_int8")
    if q:
        parts.append("draft in int8 weights and activations" if q == "dynamic" else "draft in weight-only int8")
    return f" (saguaro rows: {'; '.join(parts)})" if parts else ""


def _fmt(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return fmt.format(value)


def _clean(v: Any) -> Any:
    """JSON-safe: NaN/inf become None, tuples lists."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


def write_json(results: dict, path: Path) -> None:
    """The full record (configuration, machine, every sample, summary, ratios, plan)."""
    path.write_text(json.dumps(_clean(results), indent=1, allow_nan=False) + "\n", encoding="utf-8")


def markdown(results: dict, title: Optional[str] = None) -> str:
    """The table of the run: one row per method, then the ratios, the plan and the targets."""
    cfg = results["config"]
    m = results["machine"]
    lines = [f"# {title or 'saguaro benchmark'}", ""]
    if cfg.get("notes"):
        lines += [cfg["notes"], ""]
    lines += [f"- command: `{cfg.get('command') or '?'}`",
              f"- target `{cfg['target']}`, draft `{cfg['draft']}`{_draft_note(cfg)}, {cfg['dtype']}, {cfg['max_new_tokens']} new tokens "
              f"(EOS ignored), temperature {cfg['temperature']}, batch {cfg['batch']}, seed {cfg['seed']}",
              f"- {len(results['prompts'])} prompts ({', '.join(sorted({p['source'] for p in results['prompts']}))}), "
              f"methods alternating round-robin per prompt, medians over prompts",
              f"- machine: {m.get('cpu_model', '?')}, cores {m.get('affinity')}, torch {m.get('torch')}, "
              f"transformers {m.get('transformers_version')}, commit {str(m.get('git_commit'))[:10]}"
              f"{' (dirty tree)' if m.get('git_dirty') else ''}, load average at start {m.get('loadavg_at_start')}",
              f"- CPU flags: {' '.join(m.get('cpu_flags') or ['?'])}; quantized kernel path: "
              f"{m.get('quant_kernel_path') or '?'}; torch's CPU capability: {m.get('aten_cpu_capability', '?')}; "
              f"llama.cpp build: {m.get('llamacpp_build', '?')}",
              f"- run {results['started_utc']} → {results['finished_utc']} ({results['wall_s']:.0f} s)", ""]
    header = ["method", "cores", "threads"] + [h for _, h, _ in ROW_FIGURES] + ["agreement"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for meth in results["methods"]:
        s = results["summary"].get(meth["name"], {})
        thr = f"{meth['target_threads']}" + (f"+{meth['draft_threads']}" if meth["mode"] != "ar" else "")
        row = [meth["name"], ",".join(map(str, meth["cores"])), thr]
        row += [_fmt(s.get(k), f) for k, _, f in ROW_FIGURES]
        row.append(_fmt(s.get("agreement_with_reference"), "{:.0%}"))
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Ratios (median decode tok/s of the numerator / of the denominator; paired = median of per-prompt ratios):", "",
              "| ratio | value | paired | numerator / denominator |", "|---|---|---|---|"]
    for r in results["ratios"]:
        lines.append(f"| {r['label']} | {_fmt(r['value'], '{:.2f}')} | {_fmt(r.get('paired'), '{:.2f}')} | "
                     f"{r['numerator'] or '–'} / {r['denominator'] or '–'} |")
    plan = results.get("planner")
    if plan:
        lines += ["", "## Plan and limits (speed model of docs/algorithm.md §5, measured latencies)", "",
                  f"- acceptance a = {plan['acceptance']:.3f} over {plan['calibration_positions']} calibration positions; "
                  f"hit curves (C = {plan['saguaro_c']:g}) after a rejection miss(F) = {plan['hit_curve_rejected']['m1']:.2f}·F^-{plan['hit_curve_rejected']['r']:.2f}, "
                  f"after all accepted {plan['hit_curve_all_accepted']['m1']:.2f}·F^-{plan['hit_curve_all_accepted']['r']:.2f}",
                  f"- chosen: K = {plan['k']}, fan-out {plan['fanout']} (M = {plan['fanout_budget']}), C = {plan['saguaro_c']} "
                  f"({plan['saguaro_c_note']}), backup {plan['backup']}, fast backup from batch {plan['backup_critical_batch']}",
                  f"- SSD predicted: hit rate {plan['ssd']['hit_rate']:.0%}, {plan['ssd']['tokens_per_round']:.2f} tokens/round, "
                  f"verify {plan['ssd']['verify_s'] * 1e3:.0f} ms, draft tree work {plan['ssd']['tree_work_s'] * 1e3:.0f} ms, "
                  f"round {plan['ssd']['round_s'] * 1e3:.0f} ms; replay on the calibration text: hit rate "
                  f"{plan['replay']['hit_rate']:.0%}, {plan['replay']['tokens_per_round']:.2f} tokens/round",
                  f"- SSD limit (every round a hit, a round no shorter than the verification or the draft's least round, K = {plan['ssd_limit']['k']}): "
                  f"{plan['ssd_limit']['tokens_per_s']:.2f} tok/s", ""]
        if plan.get("saguaro_c_table"):
            lines += ["Saguaro constant C (each row planned with its own acceptance and hit curves):", "",
                      "| C | acceptance | K | fan-out | hit rate | predicted SSD tok/s |", "|---|---|---|---|---|---|"]
            for row in plan["saguaro_c_table"]:
                lines.append(f"| {row['c']:g} | {row['acceptance']:.3f} | {row['k']} | {row['fanout']} | "
                             f"{row['hit_rate']:.0%} | {row['predicted_tokens_per_s']:.2f} |")
            lines.append("")
        lines += ["| method | predicted tok/s | measured decode tok/s |", "|---|---|---|"]
        for name, v in plan["predicted"].items():
            lines.append(f"| {name} | {v:.2f} | {_fmt(results['summary'].get(name, {}).get('decode_tps'), '{:.2f}')} |")
    if results.get("roofline"):
        from saguaro.benchmark.bandwidth_roofline import markdown_lines

        lines += markdown_lines(results["roofline"])
    targets = results.get("targets")
    if targets:
        source = next((t["limit_source"] for t in targets if t.get("limit_source")), None)
        lines += ["", "## Issue #6 targets", ""]
        if source:
            lines += ["LIMIT: the speed model with the planner's latencies, the SSD run's own K and fan-out, and "
                      f"{source}, with no overhead beyond the model's round; a miss that LIMIT reaches is the "
                      "implementation's (measured of LIMIT: 100% is no overhead beyond the model). bound: every round a hit (the best measured K); a miss between LIMIT and "
                      "bound needs a draft that predicts more outcomes; one beyond the bound is physics.", ""]
        lines += ["| target | measured | predicted | LIMIT | measured of LIMIT | bound | verdict |",
                  "|---|---|---|---|---|---|---|"]
        for t in targets:
            lines.append(f"| {t['target']} | {_fmt(t['measured'], '{:.2f}')} | {_fmt(t['predicted'], '{:.2f}')} | "
                         f"{_fmt(t['limit'], '{:.2f}')} | {_fmt(t.get('of_limit'), '{:.0%}')} | "
                         f"{_fmt(t.get('bound'), '{:.2f}')} | {t['verdict']} |")
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path, title: Optional[str] = None) -> None:
    """Bar chart of median decode and end-to-end tok/s per method, the main ratios printed on it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [m["name"] for m in results["methods"]]
    dec = [results["summary"][n].get("decode_tps") or 0.0 for n in names]
    e2e = [results["summary"][n].get("e2e_tps") or 0.0 for n in names]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(names) + 2), 4.8))
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], dec, width=0.4, label="decode tok/s (median)")
    ax.bar([x + 0.2 for x in xs], e2e, width=0.4, label="end-to-end tok/s (median)")
    for x, v in zip(xs, dec):
        ax.text(x - 0.2, v, f"{v:.2f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(xs))
    ax.set_xticklabels(names, rotation=25, ha="right", fontsize=8)
    ax.set_ylabel("tokens / s")
    # head room so the legend and the ratio box never cover a bar
    ax.set_ylim(0, max(dec + e2e + [1e-9]) * 1.6)
    cfg = results["config"]
    ax.set_title(title or f"{cfg['target']} / {cfg['draft']}, {cfg['max_new_tokens']} tokens, T={cfg['temperature']}",
                 fontsize=10)
    text = "\n".join(f"{r['label']}: {r['value']:.2f}" for r in results["ratios"] if r.get("value") is not None)
    if text:
        ax.text(0.99, 0.98, text, transform=ax.transAxes, ha="right", va="top", fontsize=8,
                bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "0.7"})
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_all(results: dict, out_dir: Path, name: str, title: Optional[str] = None) -> dict[str, Path]:
    """``<out_dir>/<name>.json``, ``.md`` and ``.png``; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {ext: out_dir / f"{name}.{ext}" for ext in ("json", "md", "png")}
    write_json(results, paths["json"])
    paths["md"].write_text(markdown(results, title), encoding="utf-8")
    plot(results, paths["png"], title)
    return paths
