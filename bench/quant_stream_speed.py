"""What a verification costs next to a decode when the weights stream from DRAM: each x16 kernel
multiplies 1 and 5 rows through a stack of distinct matrices of a real shape (hundreds of MB, far past
the caches, as in a forward), on 1 and 2 threads, alternating (medians; wall time). Random blocks with
sane scales (the speed does not depend on the values). Records the CPU flags and the kernel path.

    python -m bench.quant_stream_speed [--reps 5] [--name quant-stream-speed]
Writes bench/results/<name>.{json,md}.
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
# (format, out, in, copies, what): about 350-480 MB a stack
CASES = [("Q4_K", 17920, 1536, 28, "1.5B gate/up"), ("Q6_K", 1536, 8960, 28, "1.5B ffn_down"),
         ("Q5_0", 9728, 896, 48, "0.5B gate/up"), ("Q8_0", 151936, 896, 2, "0.5B head")]
BLOCK = {"Q4_K": (144, 0), "Q6_K": (210, 208), "Q5_0": (22, 0), "Q8_0": (34, 0)}  # bytes, offset of d


def blocks(kind: str, n: int, k: int) -> torch.Tensor:
    rng = np.random.default_rng(0)
    b = rng.integers(0, 256, size=(n, quant.row_bytes(kind, k)), dtype=np.uint8)
    size, at = BLOCK[kind]
    blk = b.reshape(n, -1, size)
    halves = rng.uniform(0.001, 0.02, size=(*blk.shape[:2], 2)).astype(np.float16).view(np.uint8)
    blk[..., at:at + 2] = halves[..., :2]
    if kind == "Q4_K":
        blk[..., 2:4] = halves[..., 2:]
    return torch.from_numpy(b)


def stack(kind: str, n: int, k: int, copies: int):
    """copies distinct repacked matrices and the kernel that multiplies one."""
    b = blocks(kind, n, k)
    core = quant.core()
    if kind == "Q4_K":
        one, gemm = quant.q4k16_repack(b, n, k, threads=2), core.q4k16_gemm
    elif kind == "Q6_K":
        one, gemm = quant.q6k16_repack(b, n, k, threads=2), core.q6k16_gemm
    else:
        tid = quant.type_id(kind)
        one = quant.b16_repack(b, kind, n, k)
        return [one.clone() for _ in range(copies)], lambda x, p, n_, out, t, path: core.quant_b16_gemm(
            x, p, tid, n_, out, t, path)
    return [one.clone() for _ in range(copies)], gemm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--name", default="quant-stream-speed", help="the results page's file name (no suffix)")
    args = ap.parse_args()
    rows = []
    for kind, n, k, copies, what in CASES:
        packs, gemm = stack(kind, n, k, copies)
        total = sum(p.numel() for p in packs)
        ms: dict[tuple[int, int], list[float]] = {}
        for _ in range(args.reps):  # alternate the settings inside each repetition
            for threads in (1, 2):
                for m in (1, 5):
                    x, out = torch.randn(m, k), torch.empty(m, n)
                    t = time.perf_counter()
                    for p in packs:
                        gemm(x, p, n, out, threads, "auto")
                    ms.setdefault((threads, m), []).append((time.perf_counter() - t) * 1e3)
        for threads in (1, 2):
            one, five = (statistics.median(ms[(threads, m)]) for m in (1, 5))
            rows.append({"format": kind, "what": what, "n": n, "k": k, "copies": copies, "mb": total / 1e6,
                         "threads": threads, "ms_1": one, "ms_5": five, "gb_s_1": total / one / 1e6,
                         "ratio_5_to_1": five / one})
            print(rows[-1], flush=True)
        del packs
    info = {"machine": machine(), "flags": cpu_flags(), "kernel_path": quant.path_name(), "reps": args.reps,
            "load_average_at_end": os.getloadavg(), "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(info, indent=1))
    lines = ["# A 5-row product next to a 1-row product with the weights streaming from DRAM (x16 kernels)", "",
             f"Command: `python -m bench.quant_stream_speed --reps {args.reps} --name {args.name}`. CPU: {info['machine']['cpu']}; "
             f"flags: {' '.join(info['flags'])}; kernel path: **{info['kernel_path']}**; load average at the end: "
             f"{', '.join(f'{v:.2f}' for v in info['load_average_at_end'])} (a shared machine). Each row multiplies "
             "a stack of distinct matrices (far past the caches); medians over repetitions, settings alternating.", "",
             "| format | matrix (out x in) x copies | MB | threads | 1 row ms | 1 row GB/s | 5 rows ms | 5 rows / 1 row |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['format']} | {r['what']} {r['n']} x {r['k']} x {r['copies']} | {r['mb']:.0f} | "
                     f"{r['threads']} | {r['ms_1']:.1f} | {r['gb_s_1']:.1f} | {r['ms_5']:.1f} | "
                     f"{r['ratio_5_to_1']:.2f} |")
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
