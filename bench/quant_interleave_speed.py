"""The interleaved (x16) kernels against the GGUF-block kernel on the 1.5B target's shapes, at 1, 5 and 16
rows, on 1 and 2 threads (medians; wall time): the Q6_K head (151936 x 1536, 199 MB: streamed from DRAM),
a Q6_K and a Q4_K ffn_down (1536 x 8960) and the Q4_K gate/up (17920 x 1536). Random blocks with sane
scales (the speed does not depend on the values). Records the CPU flags and the kernel path.

    python -m bench.quant_interleave_speed [--reps 9]
Writes bench/results/quant-interleave-speed.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: bench is a package
from bench.models import machine  # noqa: E402
from bench.quant_survey import cpu_flags  # noqa: E402

from saguaro.kernels import quant  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CASES = [("Q6_K", 151936, 1536, "head"), ("Q6_K", 1536, 8960, "ffn_down"), ("Q4_K", 1536, 8960, "ffn_down"),
         ("Q4_K", 17920, 1536, "gate/up")]


def blocks(kind: str, n: int, k: int) -> torch.Tensor:
    rng = np.random.default_rng(0)
    b = rng.integers(0, 256, size=(n, quant.row_bytes(kind, k)), dtype=np.uint8)
    blk = b.reshape(n, -1, 144 if kind == "Q4_K" else 210)
    halves = rng.uniform(0.001, 0.02, size=(*blk.shape[:2], 2)).astype(np.float16).view(np.uint8)
    if kind == "Q4_K":
        blk[..., 0:4] = halves
    else:
        blk[..., 208:210] = halves[..., :2]
    return torch.from_numpy(b)


def median_ms(f, reps: int) -> float:
    f()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=9)
    args = ap.parse_args()
    core, rows = quant.core(), []
    for kind, n, k, what in CASES:
        b = blocks(kind, n, k)
        tid = quant.type_id(kind)
        packed = (quant.q4k16_repack if kind == "Q4_K" else quant.q6k16_repack)(b, n, k, threads=2)
        x16 = core.q4k16_gemm if kind == "Q4_K" else core.q6k16_gemm
        for threads in (1, 2):
            for m in (1, 5, 16):
                x, out = torch.randn(m, k), torch.empty(m, n)
                gguf = median_ms(lambda: core.quant_gemm(x, b, tid, n, out, threads, "avx512"), args.reps)
                inter = median_ms(lambda: x16(x, packed, n, out, threads, "avx512"), args.reps)
                rows.append({"format": kind, "what": what, "n": n, "k": k, "threads": threads, "rows": m,
                             "gguf_ms": gguf, "x16_ms": inter, "x16_gb_s": packed.numel() / inter / 1e6})
                print(rows[-1], flush=True)
    info = {"machine": machine(), "flags": cpu_flags(), "kernel_path": quant.path_name(), "reps": args.reps,
            "load_average_at_end": os.getloadavg(), "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "quant-interleave-speed.json").write_text(json.dumps(info, indent=1))
    lines = ["# Interleaved (x16) vs GGUF-block kernels on the 1.5B's shapes (wall time, medians)", "",
             f"Command: `python -m bench.quant_interleave_speed --reps {args.reps}`. CPU: {info['machine']['cpu']}; "
             f"flags: {' '.join(info['flags'])}; kernel path: **{info['kernel_path']}**; load average at the end: "
             f"{', '.join(f'{v:.2f}' for v in info['load_average_at_end'])} (a shared machine).", "",
             "| format | matrix (out x in) | threads | rows | GGUF blocks ms | x16 ms | x16 / GGUF | x16 / its 1 row |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        one = next(o for o in rows if o["format"] == r["format"] and o["n"] == r["n"] and o["k"] == r["k"]
                   and o["threads"] == r["threads"] and o["rows"] == 1)
        lines.append(f"| {r['format']} | {r['what']} {r['n']} x {r['k']} | {r['threads']} | {r['rows']} | "
                     f"{r['gguf_ms']:.3f} | {r['x16_ms']:.3f} | {r['x16_ms'] / r['gguf_ms']:.2f} | "
                     f"{r['x16_ms'] / one['x16_ms']:.2f} |")
    (RESULTS / "quant-interleave-speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
