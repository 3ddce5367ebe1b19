"""bf16 small-M linear speed: saguaro's batch-invariant kernel vs torch's F.linear, on 1 thread.

Usage: python bench/small_gemm_speed.py [--reps 7] [--threads 1] [--out bench/results/linear]

Shapes (K, N) are the Qwen2.5 0.5B / 1.5B projections (qkv, o, gate_up, down, head); M is the number
of rows: 1 = a decode step, 5 = a K=4 verify, 8-32 = tree steps. For every (shape, M) the kernel and
torch's bf16 F.linear (and fp32 F.linear as an extra row) are called alternately and the median per
call is reported in milliseconds, plus each one's cost relative to the kernel's own M = 1 call.
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
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kernels import cpu_model  # noqa: E402

from saguaro.kernels.small_gemm import available, bf16_linear, pack_bf16  # noqa: E402

SHAPES = [(896, 1152), (896, 896), (896, 9728), (4864, 896), (896, 151936),
          (1536, 2048), (1536, 17920), (8960, 1536)]
MS = (1, 2, 5, 8, 16, 32)
OUT = Path(__file__).resolve().parent / "results" / "linear"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if not available():
        raise SystemExit("this CPU has no AVX2+FMA: the kernel would run its scalar reference path")
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    rows = []
    g = torch.Generator().manual_seed(0)
    for K, N in SHAPES:
        w = (torch.randn(N, K, generator=g) * K ** -0.5).to(torch.bfloat16)
        w32 = w.float()
        packed = pack_bf16(w)  # as a model holds it: packed once at load
        for M in MS:
            x = torch.randn(M, K, generator=g).to(torch.bfloat16)
            x32 = x.float()
            calls = {
                "saguaro": lambda: bf16_linear(x, packed, threads=args.threads),
                "torch bf16": lambda: F.linear(x, w),
                "torch fp32": lambda: F.linear(x32, w32),
            }
            times = {k: [] for k in calls}
            for name, f in calls.items():  # warm-up
                f()
            for _ in range(args.reps):
                for name, f in calls.items():
                    t0 = time.perf_counter()
                    f()
                    times[name].append((time.perf_counter() - t0) * 1e3)
            row = {"K": K, "N": N, "M": M, **{k: statistics.median(v) for k, v in times.items()}}
            rows.append(row)
            print(f"K={K:5d} N={N:6d} M={M:2d}  " + "  ".join(f"{k} {row[k]:8.3f}" for k in calls), flush=True)
    meta = {"cpu": cpu_model(), "torch": torch.__version__, "threads": args.threads, "reps": args.reps,
            "load_average_1min_at_start": load, "load_average_1min_at_end": os.getloadavg()[0]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    one = {(r["K"], r["N"]): r["saguaro"] for r in rows if r["M"] == 1}
    lines = ["# bf16 small-M linear: saguaro kernel vs torch F.linear", "",
             f"CPU: {meta['cpu']} (AVX2+FMA, no AVX-512/AMX), torch {meta['torch']}, {args.threads} thread(s), "
             f"median of {args.reps} alternating calls, ms per call. Load average (1 min) {load:.2f} at start, "
             f"{meta['load_average_1min_at_end']:.2f} at end (shared 2-core VM).", "",
             "x M = saguaro time / saguaro M=1 time of the same shape (cost relative to one decode-step call).", "",
             "| K | N | M | saguaro | torch bf16 | torch fp32 | torch bf16 / saguaro | saguaro x M=1 |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['K']} | {r['N']} | {r['M']} | {r['saguaro']:.3f} | {r['torch bf16']:.3f} | "
                     f"{r['torch fp32']:.3f} | {r['torch bf16'] / r['saguaro']:.2f} | "
                     f"{r['saguaro'] / one[(r['K'], r['N'])]:.2f} |")
    tot = {M: {k: sum(r[k] for r in rows if r["M"] == M and r["N"] != 151936) for k in ("saguaro", "torch bf16")}
           for M in MS}
    lines += ["", "Sum over the 7 non-head shapes (a rough per-layer mix), ms:", "",
              "| M | saguaro | torch bf16 | saguaro x M=1 | torch bf16 x torch M=1 |", "|---|---|---|---|---|"]
    for M in MS:
        lines.append(f"| {M} | {tot[M]['saguaro']:.2f} | {tot[M]['torch bf16']:.2f} | "
                     f"{tot[M]['saguaro'] / tot[1]['saguaro']:.2f} | {tot[M]['torch bf16'] / tot[1]['torch bf16']:.2f} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
