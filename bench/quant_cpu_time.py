"""Contention-robust companion of bench/quant_speed.py: one torch thread, process CPU time (not wall
time) of a one-token decode, a 5-token and a 16-token extend on the quantized and the bf16 path of a real
model; medians of 7 steps. On a shared machine the wall-clock pages swing with other jobs; CPU time of one
thread does much less (caches and memory bandwidth are still shared).

Usage: python -m bench.quant_cpu_time [--models qwen2.5-coder-1.5b qwen2.5-coder-0.5b] [--steps 7]
Writes bench/results/quant-cpu-time.{json,md} with the CPU flags and the kernel path.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: bench is a package
from bench.models import machine  # noqa: E402
from bench.quant_survey import cpu_flags  # noqa: E402

import saguaro.models as M  # noqa: E402
from saguaro.kernels import quant  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
PROMPT = "def quicksort(arr):\n    if len(arr) <= 1:\n        return arr\n"


def measure(model: str, quantized: bool, steps: int) -> dict[int, float]:
    lm = M.load(model, num_threads=1, **({"quantized": True} if quantized else {}))
    a = lm.adapter
    a.prefill([0], [lm.tokenizer.encode(PROMPT)])
    t: dict[int, list[float]] = {1: [], 5: [], 16: []}
    for _ in range(steps):
        for rows in t:
            base = a.length(0)
            t0 = time.process_time()
            a.extend([0], [[13 + j for j in range(rows)]])
            t[rows].append(time.process_time() - t0)
            a.truncate(0, base)
    return {rows: 1e3 * statistics.median(v) for rows, v in t.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b"])
    ap.add_argument("--steps", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for model in args.models:
        for quantized in (True, False):
            ms = measure(model, quantized, args.steps)
            rows.append({"model": model, "path": "quantized" if quantized else "bf16", "ms": ms,
                         "rows5_over_decode": ms[5] / ms[1], "rows16_over_decode": ms[16] / ms[1]})
            print(rows[-1], flush=True)
    info = {"machine": machine(), "flags": cpu_flags(), "kernel_path": quant.path_name(), "steps": args.steps,
            "load_average_at_end": os.getloadavg(), "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "quant-cpu-time.json").write_text(json.dumps(info, indent=1))
    lines = ["# Quantized vs bf16, one thread, CPU time (medians)", "",
             f"Command: `python -m bench.quant_cpu_time --steps {args.steps}`. CPU: {info['machine']['cpu']}; flags: "
             f"{' '.join(info['flags'])}; quantized kernel path: **{info['kernel_path']}**; load average at the end: "
             f"{', '.join(f'{x:.2f}' for x in info['load_average_at_end'])}.", "",
             "| model | path | decode ms | 5-row ms | 16-row ms | 5-row / decode | 16-row / decode |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        ms = r["ms"]
        lines.append(f"| {r['model']} | {r['path']} | {ms[1]:.1f} | {ms[5]:.1f} | {ms[16]:.1f} | "
                     f"{r['rows5_over_decode']:.2f} | {r['rows16_over_decode']:.2f} |")
    (RESULTS / "quant-cpu-time.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
