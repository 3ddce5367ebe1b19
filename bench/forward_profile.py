"""Where a native forward's time goes: one-token decode vs an N-token verification (extend), split into
the projections (saguaro's packed bf16 kernel), attention, RMSNorm, rotary and the rest (Python glue,
residual adds, SiLU), plus the output head alone.

Usage: python bench/forward_profile.py [--model qwen2.5-coder-1.5b] [--rows 5] [--rounds 7]

Each component is timed by wrapping its Python entry point (the wrappers add a few microseconds per
call, the same for both forwards); the decode and extend forwards alternate inside each round and the
figures are medians over rounds. Writes bench/results/forward-profile-<model>.{json,md}.
"""
from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).parent))
from models import PROMPT, machine  # noqa: E402  (bench/models.py: the same prompt and machine record)

import saguaro.models as M  # noqa: E402
from saguaro.kernels import attention as attention_kernel  # noqa: E402
from saguaro.models import attention, linear, norm, rotary  # noqa: E402

COMPONENTS = ("projections", "attention", "rmsnorm", "rotary")


def _instrument(acc: dict[str, float]) -> None:
    """Accumulate seconds per component in `acc` (module-level patches, kept for the process)."""

    def wrap(owner: object, name: str, label: str) -> Callable:
        fn = getattr(owner, name)

        def timed(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                acc[label] += time.perf_counter() - t

        setattr(owner, name, timed)
        return timed

    wrap(linear.Linear, "_small", "projections")
    wrap(attention_kernel, "causal_attention", "attention")
    wrap(norm.RMSNorm, "__call__", "rmsnorm")
    attention.apply_rotary = wrap(rotary, "apply_rotary", "rotary")


def profile(spec: str, rows: int, rounds: int) -> dict:
    lm = M.load(spec, dtype=torch.bfloat16, device="cpu")
    ad = lm.adapter
    prompt = lm.tokenizer.encode(PROMPT) if lm.tokenizer is not None else list(range(1000, 1064))
    ad.prefill([0], [prompt])
    base = ad.length(0)
    acc: dict[str, float] = collections.defaultdict(float)

    def forward(n: int) -> dict[str, float]:
        acc.clear()
        t = time.perf_counter()
        ad.extend([0], [[11 + i for i in range(n)]])
        total = time.perf_counter() - t
        ad.truncate(0, base)
        out = {c: acc.get(c, 0.0) * 1e3 for c in COMPONENTS}
        out["other"] = total * 1e3 - sum(out.values())
        out["total"] = total * 1e3
        return out

    for n in (1, rows):  # warm up before instrumenting too
        forward(n)
    _instrument(acc)
    samples: dict[int, list[dict[str, float]]] = {1: [], rows: []}
    for _ in range(rounds):
        for n in (1, rows):
            samples[n].append(forward(n))
    med = {n: {k: statistics.median(s[k] for s in ss) for k in ss[0]} for n, ss in samples.items()}
    head = ad.model.head
    head_ms = {}
    for n in (1, rows):
        x = torch.randn(n, lm.config.hidden_size, dtype=torch.bfloat16)
        ts = []
        for _ in range(rounds):
            t = time.perf_counter()
            head.forward_float(x)
            ts.append((time.perf_counter() - t) * 1e3)
        head_ms[n] = statistics.median(ts)
    return {"model": spec, "rows": rows, "rounds": rounds, "median_ms": {str(n): v for n, v in med.items()},
            "head_ms": {str(n): v for n, v in head_ms.items()},
            "qkv+o+mlp+head (multiply-adds per row)": _projection_macs(ad.model, lm.config)}


def _projection_macs(model, config) -> int:
    """Multiply-adds of every projection for one row (the packed kernel's work per token)."""
    h = config.hidden_size
    total = 0
    for lay in model.layers:
        a, m = lay.attention, lay.mlp
        total += a.qkv.out_features * h + a.out.out_features * a.h * a.d
        total += m.gate_up.out_features * h + m.down.out_features * m.intermediate
    return total + model.head.out_features * h


def write(res: dict, out: Path) -> Path:
    rows = res["rows"]
    d, e = res["median_ms"]["1"], res["median_ms"][str(rows)]
    macs = res["qkv+o+mlp+head (multiply-adds per row)"]
    lines = [f"# Forward profile: {res['model']} decode vs {rows}-token extend (bf16, 1 thread)", "",
             f"Machine: {res['machine']['cpu']} ({res['machine']['cpu_capability']}), torch {res['machine']['torch']}. "
             f"Medians over {res['rounds']} alternating rounds (bench/forward_profile.py).", "",
             f"| component | decode ms | extend {rows} ms | ratio |", "|---|---|---|---|"]
    for k in (*COMPONENTS, "other", "total"):
        lines.append(f"| {k} | {d[k]:.1f} | {e[k]:.1f} | {e[k] / d[k]:.2f} |" if d[k] > 0 else
                     f"| {k} | {d[k]:.1f} | {e[k]:.1f} | – |")
    lines += ["", f"Output head alone: {res['head_ms']['1']:.1f} ms (1 row), {res['head_ms'][str(rows)]:.1f} ms ({rows} rows).",
              "", f"Projections: {macs / 1e9:.2f} G multiply-adds per row, {macs * 2 / 1e9:.2f} GB of bf16 weights. "
              f"Decode streams them at {macs * 2 / d['projections'] / 1e6:.1f} GB/s; "
              f"{rows} rows run {rows * macs / e['projections'] / 1e6:.1f} G multiply-adds/s.", ""]
    if res.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in res["notes"]] + [""]
    path = out / f"forward-profile-{res['model']}.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="qwen2.5-coder-1.5b")
    ap.add_argument("--rows", type=int, default=5, help="tokens of the extend (K + 1)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--note", action="append", default=[])
    args = ap.parse_args()
    torch.set_num_threads(1)
    res = profile(args.model, args.rows, args.rounds)
    res["machine"], res["notes"] = machine(), args.note
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"forward-profile-{args.model}.json").write_text(json.dumps(res, indent=1), encoding="utf-8")
    print(write(res, out).read_text())


if __name__ == "__main__":
    main()
