"""AR, SD and SSD on the quantized default pair (both models on GGUF blocks, load(..., quantized=True)):
greedy tokens/s on the same prompt, and whether SD / SSD give AR's tokens exactly.

Usage: python -m bench.quant_modes [--tokens 64] [--rounds 2] [--k 4]

AR and SD run their workers with 2 torch threads each (they never overlap); SSD runs the target and the
draft on one thread each, concurrently (the 2 cores). The modes alternate in every round; the figures are
medians over rounds. Writes bench/results/quant-modes.{json,md} with the CPU flags and the kernel path.
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
from bench.models import PROMPT, machine  # noqa: E402
from bench.quant_survey import cpu_flags  # noqa: E402

import saguaro.models as M  # noqa: E402
from saguaro.runtime import RequestParams  # noqa: E402
from saguaro.speculation_config import SpeculationConfig  # noqa: E402
from saguaro.kernels import quant  # noqa: E402
from saguaro.runtime import Runtime  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def run_mode(target, draft, mode: str, k: int, ids: list[int], tokens: int) -> tuple[list[int], float, dict]:
    threads = 1 if mode == "ssd" else 2
    cfg = SpeculationConfig(mode=mode, k=k, target_threads=threads, draft_threads=threads)
    with Runtime(target, draft if mode != "ar" else None, cfg) as rt:
        t0 = time.perf_counter()
        rid = rt.submit(ids, RequestParams(max_new_tokens=tokens))
        out = rt.result(rid, timeout=900).new_tokens
        dt = time.perf_counter() - t0
        metrics = rt.metrics()
    return list(out), len(out) / dt, metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--k", type=int, default=4)
    args = ap.parse_args()
    target = M.load("qwen2.5-coder-1.5b", quantized=True)
    draft = M.load("qwen2.5-coder-0.5b", quantized=True)
    ids = target.tokenizer.encode(PROMPT)
    modes = ["ar", "sd", "ssd"]
    speeds: dict[str, list[float]] = {m: [] for m in modes}
    outs, accept = {}, {}
    for r in range(args.rounds):
        for m in (modes if r % 2 == 0 else list(reversed(modes))):
            toks, tps, met = run_mode(target.adapter, draft.adapter, m, args.k, ids, args.tokens)
            speeds[m].append(tps)
            outs.setdefault(m, toks)
            if m != "ar":
                acc, prop = sum(met.get("accepted_per_position", [0])), sum(met.get("proposed_per_position", [0]))
                accept[m] = acc / prop if prop else None
            print(f"round {r} {m}: {tps:.2f} tokens/s", flush=True)
    rows = {m: {"tokens_per_s": statistics.median(v), "rounds": v, "equals_ar": outs[m] == outs["ar"],
                "acceptance": accept.get(m)} for m, v in speeds.items()}
    info = {"machine": machine(), "load_average_at_end": os.getloadavg(), "flags": cpu_flags(),
            "kernel_path": quant.path_name(), "k": args.k,
            "tokens": args.tokens, "rounds": args.rounds, "modes": rows, "ar_text": target.tokenizer.decode(outs["ar"])}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "quant-modes.json").write_text(json.dumps(info, indent=1))
    lines = ["# AR / SD / SSD on the quantized default pair (GGUF blocks), greedy, batch 1, 2 cores", "",
             f"Command: `python -m bench.quant_modes --tokens {args.tokens} --rounds {args.rounds} --k {args.k}` "
             "(medians over rounds; modes alternate).", "",
             f"CPU: {info['machine']['cpu']}; flags: {' '.join(info['flags'])}; kernel path: **{info['kernel_path']}**. "
             "AR and SD: 2 torch threads per worker; SSD: target and draft on 1 thread each, concurrently. "
             f"Load average at the end (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())}.", "",
             "| mode | tokens/s | / AR | acceptance (accepted / proposed) | tokens == AR |", "|---|---|---|---|---|"]
    ar = rows["ar"]["tokens_per_s"]
    for m, r in rows.items():
        acc = f"{r['acceptance']:.2f}" if r["acceptance"] is not None else "-"
        lines.append(f"| {m} | {r['tokens_per_s']:.2f} | {r['tokens_per_s'] / ar:.2f} | {acc} | {r['equals_ar']} |")
    (RESULTS / "quant-modes.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
