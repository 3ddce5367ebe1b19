"""The quantized path (GGUF blocks, load(..., quantized=True)) against today's bf16 path on a real model:
AR decode tokens/s, the cost of a 5-row verification and of a 16-row step relative to a decode, resident
memory, and greedy agreement between the two paths.

Usage: python -m bench.quant_speed [--model qwen2.5-coder-1.5b] [--rounds 5] [--decodes 12] [--threads 2]

Both models are loaded in one process and the methods alternate round by round; inside a round each
step times a 5-token and a 16-token extend from the current position (both rolled back with truncate)
and then a one-token decode; the figures are medians over rounds of each round's median. Resident
memory is measured in a fresh subprocess per method (load, 8 decodes, VmRSS and VmHWM). Writes
bench/results/quant-speed-<model>.{json,md} with the CPU flags, the kernel path used and the load average.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: bench is a package
from bench.models import PROMPT, machine  # noqa: E402
from bench.quant_survey import cpu_flags  # noqa: E402

import saguaro.models as M  # noqa: E402
from saguaro.kernels import quant  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = {"bf16": {}, "quantized": {"quantized": True}}
# the quantized model again with the AVX2 path forced (SAGUARO_CPU_ISA, read at each call): what an
# AVX2-only CPU (Zen 3) runs; it shares the quantized model object
FORCED = {"quantized-avx2": ("quantized", "avx2")}


def load(model: str, method: str, threads: int) -> M.LoadedModel:
    return M.load(model, num_threads=threads, **METHODS[method])


def status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def rss_only(model: str, method: str, threads: int) -> None:
    """Subprocess mode: load, decode 8 tokens, print the memory figures as JSON."""
    lm = load(model, method, threads)
    a, ids = lm.adapter, lm.tokenizer.encode(PROMPT)
    tok = int(a.prefill([0], [ids])[-1].argmax())
    for _ in range(8):
        tok = int(a.extend([0], [[tok]])[-1].argmax())
    print(json.dumps({"rss_MB": status_kb("VmRSS") / 1024, "hwm_MB": status_kb("VmHWM") / 1024}))


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def round_of(lm: M.LoadedModel, ids: list[int], decodes: int) -> dict[str, float]:
    """One round on one model: `decodes` times a one-token decode, then a 5-token and a 16-token extend
    from the same position (each rolled back), then the decode's token is kept; medians in seconds."""
    a = lm.adapter
    a.truncate(0, len(ids))
    times: dict[str, list[float]] = {"decode": [], "rows5": [], "rows16": []}
    tok = 13
    for _ in range(decodes):
        base = a.length(0)
        times["rows5"].append(timed(lambda: a.extend([0], [[tok, 11, 12, 13, 14]])))
        a.truncate(0, base)
        times["rows16"].append(timed(lambda: a.extend([0], [[tok] + list(range(20, 35))])))
        a.truncate(0, base)
        out = {}
        times["decode"].append(timed(lambda: out.setdefault("l", a.extend([0], [[tok]]))))
        tok = int(out["l"][-1].argmax())
    return {k: statistics.median(v) for k, v in times.items()}


def greedy(lm: M.LoadedModel, ids: list[int], n: int) -> list[int]:
    a = lm.adapter
    out = [int(a.prefill([0], [ids])[-1].argmax())]
    for _ in range(n - 1):
        out.append(int(a.extend([0], [[out[-1]]])[-1].argmax()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen2.5-coder-1.5b")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--decodes", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--greedy-tokens", type=int, default=32)
    ap.add_argument("--rss-only", choices=sorted(METHODS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.rss_only:
        return rss_only(args.model, args.rss_only, args.threads)
    memory = {}
    for m in METHODS:
        out = subprocess.run([sys.executable, "-m", "bench.quant_speed", "--model", args.model, "--threads",
                              str(args.threads), "--rss-only", m], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).resolve().parents[1], timeout=600)
        memory[m] = json.loads(out.stdout.strip().splitlines()[-1])
    models = {m: load(args.model, m, args.threads) for m in METHODS}
    ids = models["bf16"].tokenizer.encode(PROMPT)
    for lm in models.values():
        lm.adapter.prefill([0], [ids])
    names = list(METHODS) + ([m for m, (_, isa) in FORCED.items() if isa != quant.supported_isa()]
                             if quant.supported_isa() != "scalar" else [])
    rounds = {m: [] for m in names}
    for r in range(args.rounds):
        for m in (names if r % 2 == 0 else list(reversed(names))):
            base, isa = FORCED.get(m, (m, None))
            if isa is not None:
                os.environ["SAGUARO_CPU_ISA"] = isa
            try:
                rounds[m].append(round_of(models[base], ids, args.decodes))
            finally:
                os.environ.pop("SAGUARO_CPU_ISA", None)
    rows = {}
    for m, rs in rounds.items():
        med = {k: statistics.median(x[k] for x in rs) for k in ("decode", "rows5", "rows16")}
        rows[m] = {"decode_ms": 1e3 * med["decode"], "tokens_per_s": 1 / med["decode"],
                   "rows5_ms": 1e3 * med["rows5"], "rows5_over_decode": med["rows5"] / med["decode"],
                   "rows16_ms": 1e3 * med["rows16"], "rows16_over_decode": med["rows16"] / med["decode"],
                   **memory[FORCED.get(m, (m, None))[0]]}
    for lm in models.values():
        lm.adapter.release(0)
    g = {m: greedy(models[m], ids, args.greedy_tokens) for m in METHODS}
    agree = next((i for i, (x, y) in enumerate(zip(g["bf16"], g["quantized"])) if x != y), len(g["bf16"]))
    from saguaro.models.presets import PRESETS, preset_gguf
    gguf_mb = preset_gguf(PRESETS[args.model]).stat().st_size / 1e6 if args.model in PRESETS else None
    info = {"model": args.model, "machine": machine(), "load_average_at_end": os.getloadavg(),
            "flags": cpu_flags(), "kernel_path": quant.path_name(),
            "threads": args.threads, "rounds": args.rounds, "decodes_per_round": args.decodes, "gguf_MB": gguf_mb,
            "methods": rows, "greedy_tokens": args.greedy_tokens, "greedy_agreeing_prefix": agree,
            "greedy": g}
    RESULTS.mkdir(exist_ok=True)
    stem = f"quant-speed-{args.model}"
    (RESULTS / f"{stem}.json").write_text(json.dumps(info, indent=1))
    q, b = rows["quantized"], rows["bf16"]
    avx2 = rows.get("quantized-avx2")
    lines = [f"# Quantized (GGUF blocks) vs bf16: {args.model}, {args.threads} threads", "",
             f"Command: `python -m bench.quant_speed --model {args.model} --rounds {args.rounds} --decodes "
             f"{args.decodes} --threads {args.threads}` (medians over rounds; methods alternate in each round).",
             "", f"CPU: {info['machine']['cpu']}; flags: {' '.join(info['flags'])}; quantized kernel path: "
             f"**{info['kernel_path']}**; GGUF file {gguf_mb:.0f} MB." if gguf_mb else "",
             f"Load average at the end (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())} "
             "(above ~2.2 on these 2 cores, another process competed for them).", "",
             "| path | decode ms | tokens/s | 5-row ms | 5-row / decode | 16-row ms | 16-row / decode | RSS MB | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for m, r in rows.items():
        lines.append(f"| {m} | {r['decode_ms']:.1f} | {r['tokens_per_s']:.2f} | {r['rows5_ms']:.1f} | "
                     f"{r['rows5_over_decode']:.2f} | {r['rows16_ms']:.1f} | {r['rows16_over_decode']:.2f} | "
                     f"{r['rss_MB']:.0f} | {r['hwm_MB']:.0f} |")
    lines += ["", f"Quantized / bf16 decode speed: **{q['tokens_per_s'] / b['tokens_per_s']:.2f}x**"
              + (f" ({avx2['tokens_per_s'] / b['tokens_per_s']:.2f}x with the AVX2 path forced; its memory figures are "
                 "the quantized model's)." if avx2 else "."),
              f"Greedy decoding of {args.greedy_tokens} tokens from the prompt: the two paths agree on the first "
              f"{agree} tokens (the quantized path is the GGUF model with int8 activation blocks, as llama.cpp "
              "computes it; the bf16 path rounds the dequantized weights and the activations to bf16)."]
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
