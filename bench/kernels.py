"""Kernel speed: the C++ CPU twins (and CUDA kernels when a GPU is present) beside the pure
PyTorch/NumPy reference, at the real vocabulary size V = 151936.

Usage: python bench/kernels.py [--reps 3] [--ref-reps 2] [--quick]

For every (kernel, B, K) the implementations are called alternately (kernel, reference, kernel, ...)
and the median of the calls is reported in microseconds per call. The reference is ~100x slower, so
it runs fewer repetitions and only on the smaller configurations (its row is marked "-" elsewhere).
Writes bench/results/kernels.{json,md} (or --out PATH.{json,md}).

Logits are "LLM-like" (see llm_like_logits). Workloads (per call):
  verify_sampled  verify_chain, temperature 0.7, top-p 0.95, q = p so every draft is accepted (the
                  worst case: all K + 1 target rows are processed)
  verify_greedy   verify_chain, temperature 0, drafts = the argmax (all accepted, K + 1 argmax scans)
  fanout          fanout_candidates, F_j = 3 at each of the K + 1 positions
  sample_rows     sample_rows over B * (K + 1) rows (one tree step with M = K + 1 branches),
                  temperature 0.7, top-p 0.95, Saguaro C = 0.5 on the top 4
  sample_greedy   sample_rows over the same rows, temperature 0 (a greedy draft's tree step)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

import saguaro
import saguaro.kernels as K
import saguaro.kernels.reference as R

V = 151_936
BATCHES = (1, 8, 32)
KS = (2, 4, 8)
OUT = Path(__file__).resolve().parent / "results"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def llm_like_logits(shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    """Gaussian logits (sd 2) with 16 boosted tokens per row (+8 to +12): peaked like a language model's
    next-token distribution, so that a top-p 0.95 nucleus holds tens of tokens, not thousands."""
    logits = torch.randn(*shape, V, generator=g) * 2
    rows = logits.view(-1, V)
    boost = torch.randint(0, V, (rows.shape[0], 16), generator=g)
    rows.scatter_add_(1, boost, 8 + 4 * torch.rand(rows.shape[0], 16, generator=g))
    return logits.contiguous()


def workloads(B: int, k: int, device: str) -> dict[str, tuple[Callable, Callable | None]]:
    """name -> (kernel call, reference call)."""
    g = torch.Generator().manual_seed(B * 100 + k)
    tl = llm_like_logits((B, k + 1), g)
    sampled = dict(temperature=0.7, top_p=0.95)
    p = K.process_probs(tl[:, :k].reshape(B * k, V).contiguous(), **sampled).view(B, k, V)
    drafts = torch.multinomial(p.view(B * k, V), 1, generator=g).view(B, k).to(torch.int32)
    greedy_drafts = tl[:, :k].argmax(-1).to(torch.int32)
    seeds = list(range(B))
    branch_logits = llm_like_logits((B * (k + 1),), g)
    branch = dict(temperature=0.7, top_p=0.95, saguaro_c=0.5, saguaro_topn=4, seed=7,
                  positions=torch.arange(B * (k + 1)))
    greedy_branch = dict(temperature=0.0, seed=7, positions=torch.arange(B * (k + 1)))
    fan = [3] * (k + 1)
    dev = lambda t: t.to(device) if device != "cpu" else t
    tl_d, p_d, drafts_d, greedy_d, branch_d = map(dev, (tl, p, drafts, greedy_drafts, branch_logits))
    return {
        "verify_sampled": (lambda: K.verify_chain(tl_d, drafts_d, p_d, seed=seeds, positions=10, **sampled),
                           lambda: R.verify_chain(tl, drafts, p, seed=seeds, positions=10, **sampled)),
        "verify_greedy": (lambda: K.verify_chain(tl_d, greedy_d, None, temperature=0.0),
                          lambda: R.verify_chain(tl, greedy_drafts, None, temperature=0.0)),
        "fanout": (lambda: K.fanout_candidates(tl_d, greedy_d, fan),
                   lambda: R.fanout_candidates(tl, greedy_drafts, fan)),
        "sample_rows": (lambda: K.sample_rows(branch_d, **branch), lambda: R.sample_rows(branch_logits, **branch)),
        "sample_greedy": (lambda: K.sample_rows(branch_d, **greedy_branch),
                          lambda: R.sample_rows(branch_logits, **greedy_branch)),
    }


def timed(fn: Callable, device: str) -> float:
    if device != "cpu":
        torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    if device != "cpu":
        torch.cuda.synchronize()
    return (time.perf_counter() - t) * 1e6


def device_time_us(fn: Callable) -> float:
    """GPU time of the kernels one call launches (CUPTI via torch.profiler), without host overhead."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return sum(e.device_time_total for e in prof.key_averages() if e.device_time_total > 0
               and "Memset" not in e.key and "Memcpy" not in e.key)


def reference_runs(B: int, k: int, ref_reps: int, quick: bool) -> int:
    rows = B * (k + 1)
    if quick:
        return ref_reps if rows <= 3 else 0
    if rows <= 9:
        return ref_reps
    if rows <= 24:
        return 1
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5, help="kernel calls per configuration (median)")
    ap.add_argument("--ref-reps", type=int, default=2, help="reference calls for the small configurations")
    ap.add_argument("--quick", action="store_true", help="B=1 only, reference only at K=2 (smoke run)")
    ap.add_argument("--out", default=str(OUT / "kernels"), help="output path without suffix (.json/.md added)")
    ap.add_argument("--cuda-profile", action="store_true",
                    help="also time the CUDA kernels alone with torch.profiler (device time vs call time)")
    args = ap.parse_args()
    torch.set_num_threads(1)  # the kernels are single-threaded: compare like with like
    devices = ["cpu"] + (["cuda"] if K.cuda_available() else [])
    started = time.time()
    load_before = os.getloadavg()
    results = []
    for B in (BATCHES[:1] if args.quick else BATCHES):
        for k in KS:
            for device in devices:
                for name, (kernel, reference) in workloads(B, k, device).items():
                    kernel()  # warm the per-thread scratch buffers
                    n_ref = reference_runs(B, k, args.ref_reps, args.quick) if device == "cpu" else 0
                    ks, rs = [], []
                    for rep in range(max(args.reps, n_ref)):
                        if rep < args.reps:
                            ks.append(timed(kernel, device))
                        if rep < n_ref:
                            rs.append(timed(reference, "cpu"))
                    row = {"kernel": name, "B": B, "K": k, "V": V, "device": device,
                           "median_us": statistics.median(ks), "samples_us": ks,
                           "reference_median_us": statistics.median(rs) if rs else None, "reference_samples_us": rs}
                    if device == "cuda" and args.cuda_profile:
                        row["device_us"] = device_time_us(kernel)
                    results.append(row)
                    ref = f"{row['reference_median_us']:.0f}" if rs else "-"
                    dev = f"   GPU-only {row['device_us']:.0f} us" if "device_us" in row else ""
                    print(f"{name:15s} {device:4s} B={B:2d} K={k}: {row['median_us']:12.0f} us   reference {ref} us{dev}",
                          flush=True)
    info = {
        "config": {"V": V, "batches": list(BATCHES), "ks": list(KS), "reps": args.reps, "ref_reps": args.ref_reps,
                   "quick": args.quick, "torch_threads": 1},
        "versions": {"saguaro": saguaro.__version__, "torch": torch.__version__, "numpy": np.__version__,
                     "python": platform.python_version()},
        "build": saguaro.build_info(),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
                    "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
                    "gpu": torch.cuda.get_device_name(0) if "cuda" in devices else None},
        "wall_seconds": time.time() - started,
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(info, indent=1))
    out.with_suffix(".md").write_text(markdown(info))
    print(f"wrote {out}.json and {out}.md in {info['wall_seconds']:.0f} s")


def markdown(info: dict) -> str:
    m = info["machine"]
    lines = [
        "# Kernel speed (bench/kernels.py)",
        "",
        f"V = {info['config']['V']}; µs per call, median of {info['config']['reps']} kernel calls "
        f"(reference: {info['config']['ref_reps']} calls where run, alternating with the kernel). "
        f"CPU: {m['cpu']}, {m['cores']} cores, load average {m['loadavg_before'][0]:.1f} before / "
        f"{m['loadavg_after'][0]:.1f} after (a shared machine: absolute times are inflated by other jobs; "
        "ratios within a row are measured side by side). Kernels are single-threaded; torch uses 1 thread.",
        "",
        "Workloads: see the docstring of bench/kernels.py (verify_* accept every draft: the worst case).",
        "",
        "| kernel | device | B | K | kernel µs | µs per row | GPU-only µs | reference µs | reference / kernel |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in info["results"]:
        rows = r["B"] * (r["K"] + 1)
        ref = r["reference_median_us"]
        ref_txt = f"{ref:.0f}" if ref else "-"
        ratio_txt = f"{ref / r['median_us']:.1f}x" if ref else "-"
        dev_txt = f"{r['device_us']:.0f}" if r.get("device_us") is not None else "-"
        lines.append(f"| {r['kernel']} | {r['device']} | {r['B']} | {r['K']} | {r['median_us']:.0f} | "
                     f"{r['median_us'] / rows:.0f} | {dev_txt} | {ref_txt} | {ratio_txt} |")
    lines += ["", "µs per row = kernel µs / (B (K + 1)) (the target / draft rows one call processes). "
              "kernel µs is the whole call from Python (argument checks, parameter upload, the launch, the "
              "error read-back and its synchronisation); GPU-only µs (with --cuda-profile) is the time of the "
              "launched kernels alone, read by torch.profiler.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
