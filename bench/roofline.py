"""The roofline of saguaro's bf16 CPU kernel, and the floors it puts under issue #3's ratio targets
(a 5-token verification <= 1.1x one decode step of the 1.5B; a tree step of 8-16 branch tokens of the
0.5B <= 1.5x one decode step).

Usage: python bench/roofline.py [--reps 50] [--out bench/results/roofline]

Measured on one core, all in C++ (no Python between calls):
- the core's fp32 FMA rate with 12 independent chains (saguaro._core.small_gemm_fma_peak): AVX2 has
  no bf16 dot product, so every multiply-add of the kernel is one fp32 FMA lane and this is its ceiling;
- the kernel's rate per row count on a weight that stays in the core's L2 (compute-bound);
- its rate on a weight larger than the last-level cache (the decode's memory stream).

A forward of R rows needs R x (multiply-adds per row) FMA lanes; at the peak rate that is its least
time. Divided by the one-row decode time the machine allows (the weights' bytes at the streaming
rate, measured here), it is the least ratio any implementation of the same arithmetic can reach.
Writes <out>.json and <out>.md.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: bench is a package
from bench.kernels import cpu_model  # noqa: E402

from saguaro.kernels.small_gemm import available, core  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "roofline"

# Projection shapes (out, in) per layer and of the output head, from the models' config.json
# (hidden, intermediate, heads x head_dim, KV heads x head_dim, vocabulary, layers).
MODELS = {
    "qwen2.5-coder-1.5b": {"layers": 28, "shapes": [(1536 + 2 * 256, 1536), (1536, 1536), (2 * 8960, 1536),
                                                    (1536, 8960)], "head": (151936, 1536)},
    "qwen2.5-coder-0.5b": {"layers": 24, "shapes": [(896 + 2 * 128, 896), (896, 896), (2 * 4864, 896),
                                                    (896, 4864)], "head": (151936, 896)},
}
ROWS = (1, 2, 3, 4, 5, 6, 8, 16)
STREAMED_ROWS = (1, 2, 3, 4, 5)
IN_CACHE = (128, 1536)    # N x K = 384 KB of bf16: stays in a 512 KB L2
STREAMED = (151936, 1536)  # the 1.5B's output head, 467 MB: far larger than the 32 MB L3


def macs_per_row(model: str) -> int:
    m = MODELS[model]
    return m["layers"] * sum(n * k for n, k in m["shapes"]) + m["head"][0] * m["head"][1]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5, help="rounds; the median of the rounds' figures is reported")
    ap.add_argument("--streamed", default=f"{STREAMED[0]},{STREAMED[1]}",
                    help="N,K of the streamed weight (default: the 1.5B's output head)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    streamed = tuple(int(v) for v in args.streamed.split(","))
    if not available():
        raise SystemExit("this CPU has no AVX2+FMA: the kernel would run its scalar reference path")
    c = core()
    load = os.getloadavg()[0]
    peaks, in_cache, stream = [], {m: [] for m in ROWS}, {m: [] for m in STREAMED_ROWS}
    for _ in range(args.rounds):  # interleaved rounds: a drift of the shared VM hits every figure alike
        peaks.append(c.small_gemm_fma_peak(0.2))
        for m in ROWS:
            in_cache[m].append(m * IN_CACHE[0] * IN_CACHE[1] / c.small_gemm_time_packed(m, *IN_CACHE, args.reps, 1))
        for m in stream:
            stream[m].append(c.small_gemm_time_packed(m, *streamed, max(3, args.reps // 10), 1))
    peak = statistics.median(peaks)
    cache_rate = {m: statistics.median(v) for m, v in in_cache.items()}
    stream_s = {m: statistics.median(v) for m, v in stream.items()}
    n, k = streamed
    t1, t5 = stream_s[1], stream_s[5]
    bw = 2 * n * k / t1
    rate5 = 5 * n * k / t5
    floors = {}
    for model, rows in (("qwen2.5-coder-1.5b", (5,)), ("qwen2.5-coder-0.5b", (8, 16))):
        mac = macs_per_row(model)
        decode_s = 2 * mac / bw  # bf16: two bytes per multiply-add of one row
        for r in rows:
            floors[f"{model} x{r}"] = {"macs_per_row": mac, "rows": r, "decode_floor_ms": decode_s * 1e3,
                                       "rows_floor_ms": r * mac / peak * 1e3,
                                       "least_ratio": r * mac / peak / decode_s}
    result = {"meta": {"cpu": cpu_model(), "reps": args.reps, "rounds": args.rounds, "load_average_1min_at_start": load,
                       "load_average_1min_at_end": os.getloadavg()[0]},
              "fma_peak_macs_per_s": peak, "in_cache_macs_per_s": cache_rate,
              "streamed": {"shape": streamed, "decode_ms": t1 * 1e3, "decode_bytes_per_s": bw, "rows5_ms": t5 * 1e3,
                           "rows5_macs_per_s": rate5,
                           "ms_per_rows": {m: t * 1e3 for m, t in stream_s.items()}},
              "floors": floors}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    g = 1e9
    lines = ["# Roofline of the bf16 small-M kernel (one core)", "",
             f"CPU: {result['meta']['cpu']} (AVX2+FMA; no AVX-512, no bf16 dot product). `python bench/roofline.py`; "
             f"medians of {args.rounds} interleaved rounds. Load average (1 min) {load:.2f} at start, "
             f"{result['meta']['load_average_1min_at_end']:.2f} at end (shared 2-core VM).", "",
             f"**fp32 FMA peak: {peak / g:.1f} G multiply-adds/s** (12 independent chains of 256-bit FMAs). Every "
             "multiply-add of the kernel is one such lane: AVX2 has no bf16 dot product.", "",
             f"Kernel on an in-cache weight ({IN_CACHE[0]} x {IN_CACHE[1]}, stays in L2):", "",
             "| rows | G multiply-adds/s | of the FMA peak |", "|---|---|---|"]
    lines += [f"| {m} | {r / g:.1f} | {r / peak:.0%} |" for m, r in cache_rate.items()]
    lines += ["", f"Kernel on a streamed weight ({n} x {k}, {2 * n * k / 1e6:.0f} MB; the default is the 1.5B's output head, "
              f"far larger than the 32 MB L3): one row "
              f"{t1 * 1e3:.2f} ms ({bw / g:.1f} GB/s), five rows {t5 * 1e3:.2f} ms ({rate5 / g:.1f} G multiply-adds/s, "
              f"{rate5 / peak:.0%} of the peak; {t5 / t1:.2f}x one row). Per row count (a K+1-row verification "
              "of K = 1..4):", "", "| rows | ms | x one row | G multiply-adds/s | of the FMA peak |", "|---|---|---|---|---|"]
    for m, t in stream_s.items():
        lines.append(f"| {m} | {t * 1e3:.2f} | {t / t1:.2f} | {m * n * k / t / g:.1f} | {m * n * k / t / peak:.0%} |")
    lines += ["",
              "## Floors for issue #3's ratio targets", "",
              "Least time of R rows = R x multiply-adds per row / FMA peak; the one-row decode at its floor = the "
              "weights' bytes at the streaming rate above. Their ratio is the least any implementation of this "
              "arithmetic reaches on this core (attention, norms and glue only add to the R-row side). The last "
              "column is the share of the FMA peak the R-row projections must sustain, while streaming the "
              "weights, for the target to hold against a decode at the streaming rate.", "",
              "| forward | multiply-adds per row | R rows at the FMA peak, ms | decode at the streaming rate, ms | "
              "least ratio | target | FMA efficiency the target needs |", "|---|---|---|---|---|---|---|"]
    targets = {"qwen2.5-coder-1.5b x5": "<= 1.1", "qwen2.5-coder-0.5b x8": "<= 1.5", "qwen2.5-coder-0.5b x16": "<= 1.5"}
    for name, f in floors.items():
        need = f["least_ratio"] / float(targets[name].split()[-1])
        lines.append(f"| {name} rows | {f['macs_per_row'] / g:.3f} G | {f['rows_floor_ms']:.1f} | "
                     f"{f['decode_floor_ms']:.1f} | {f['least_ratio']:.2f} | {targets[name]} | "
                     f"{need:.0%}{' (impossible)' if need > 1 else ''} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
