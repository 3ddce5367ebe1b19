"""Survey: what well-kept CPU kernels give for the Qwen2.5-Coder-1.5B projection shapes at 1, 5 and 16 rows.

Measures (2 threads, medians): torch bf16 F.linear, saguaro's bf16 small-M kernel, torch's int4 weight-only
kernel (_weight_int4pack_mm_for_cpu, group 32), torch's int8 weight-only kernel (_weight_int8pack_mm), fbgemm's
dynamic int8 linear (torch.ops.quantized.linear_dynamic), and — when the extension has it — saguaro's own
quantized GEMM on the default target's GGUF tensors of the same shape (saguaro.kernels.quant). Also lists
the quant types of the default pair's GGUF tensors. Writes bench/results/quant-kernels-survey.{md,json}.

    python -m bench.quant_survey [--reps 15] [--threads 2]
"""
from __future__ import annotations

import argparse
import collections
import json
import statistics
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

SHAPES = [(1536, 8960), (8960, 1536), (1536, 151936)]  # (in K, out N)
ROWS = (1, 5, 16)
RESULTS = Path(__file__).resolve().parent / "results"


def cpu_flags() -> list[str]:
    """The SIMD flags of this CPU from /proc/cpuinfo."""
    keep = ("avx", "fma", "f16c", "amx", "vnni")
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return sorted(f for f in line.split(":", 1)[1].split() if f.startswith(keep))
    return []


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def gguf_types() -> dict[str, dict[str, int]]:
    """{file: {quant type: tensor count}} for the default pair's GGUF files."""
    import gguf
    from saguaro.models.presets import DEFAULT_DRAFT, DEFAULT_TARGET, PRESETS, preset_gguf

    out = {}
    for name in (DEFAULT_TARGET, DEFAULT_DRAFT):
        try:
            path = preset_gguf(PRESETS[name])
        except Exception as e:  # not installed here
            out[name] = {"error": str(e)}
            continue
        r = gguf.GGUFReader(str(path))
        out[name] = dict(collections.Counter(t.tensor_type.name for t in r.tensors))
    return out


def median_ms(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def methods(k: int, n: int):
    """(name, weight bytes, make(x) -> callable) for every method that runs here."""
    from saguaro.kernels import small_gemm as small_linear

    g = torch.Generator().manual_seed(0)
    w = (torch.randn(n, k, generator=g) * 0.02)
    wb = w.bfloat16()
    yield "torch bf16 F.linear", wb.numel() * 2, lambda x: (lambda: F.linear(x, wb))
    if small_linear.available():
        packed = small_linear.pack_bf16(wb)
        yield "saguaro bf16 small-gemm", wb.numel() * 2, lambda x: (lambda: small_linear.bf16_linear(x, packed))
    try:  # int4 weight-only, groupwise asymmetric (group 32), torch's CPU kernel
        group = 32
        wg = w.reshape(n, k // group, group)
        lo, hi = wg.amin(-1), wg.amax(-1)
        scale = ((hi - lo) / 15).clamp_min(1e-8)
        q = torch.clamp(torch.round((wg - lo[..., None]) / scale[..., None]), 0, 15).to(torch.int32).reshape(n, k)
        packed4 = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1)
        zero = lo + 8 * scale  # the kernel computes (q - 8) * scale + zero
        sz = torch.stack([scale, zero], -1).transpose(0, 1).contiguous().bfloat16()
        yield ("torch int4 (_weight_int4pack_mm_for_cpu, g32)", n * k // 2 + sz.numel() * 2,
               lambda x: (lambda: torch.ops.aten._weight_int4pack_mm_for_cpu(x, packed4, group, sz)))
    except Exception as e:
        print("int4 unavailable:", e)
    s8 = w.abs().amax(1) / 127
    q8 = torch.round(w / s8[:, None]).clamp(-127, 127).to(torch.int8).contiguous()
    s8b = s8.bfloat16()
    yield "torch int8 (_weight_int8pack_mm)", n * k + n * 2, lambda x: (lambda: torch._weight_int8pack_mm(x, q8, s8b))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qw = torch.quantize_per_channel(w, s8.double(), torch.zeros(n, dtype=torch.int64), 0, torch.qint8)
        params = torch.ops.quantized.linear_prepack(qw, None)
    yield ("fbgemm dynamic int8 (quantized.linear_dynamic)", n * k + n * 8,
           lambda x: (lambda: torch.ops.quantized.linear_dynamic(x.float(), params, True)))
    try:
        from saguaro.kernels import quant
    except ImportError:
        return
    if quant.available():
        for tname, kind, blocks in gguf_tensors(k, n):
            yield (f"saguaro {kind} ({quant.isa()}; the GGUF's {tname})", blocks.numel(),
                   lambda x, b=blocks, t=kind: (lambda: quant.gemm(x.float(), b, t, n)))
            if kind == "Q4_K" and quant.q4k16_supported(n, k):
                packed = quant.q4k16_repack(blocks, n, k)
                yield (f"saguaro Q4_K repacked x16 (avx512; {tname})", packed.numel(),
                       lambda x, p=packed: (lambda: quant.q4k16_gemm(x.float(), p, n)))


def gguf_tensors(k: int, n: int):
    """(name, type, blocks) of the default target's GGUF tensors of shape [n, k], one per quant type."""
    import gguf
    from saguaro.models.presets import DEFAULT_TARGET, PRESETS, preset_gguf

    try:
        r = gguf.GGUFReader(str(preset_gguf(PRESETS[DEFAULT_TARGET])))
    except Exception:  # the model is not installed here
        return
    seen = set()
    for t in r.tensors:
        if len(t.shape) == 2 and (int(t.shape[0]), int(t.shape[1])) == (k, n) and t.tensor_type.name not in seen:
            seen.add(t.tensor_type.name)
            yield t.name, t.tensor_type.name, torch.from_numpy(t.data.reshape(n, -1).copy())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="quant-kernels-survey")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for k, n in SHAPES:
        for name, nbytes, make in methods(k, n):
            for m in ROWS:
                x = torch.randn(m, k).bfloat16()
                ms = median_ms(make(x), args.reps)
                rows.append({"in": k, "out": n, "rows": m, "method": name, "ms": round(ms, 3),
                             "weight_MB": round(nbytes / 1e6, 1), "GB_per_s_at_1_row": None})
                if m == 1:
                    rows[-1]["GB_per_s_at_1_row"] = round(nbytes / ms / 1e6, 1)
                print(f"[{k}->{n}] {m:2d} rows  {name:50s} {ms:8.3f} ms", flush=True)
    info = {"cpu": cpu_model(), "flags": cpu_flags(), "threads": args.threads, "torch": torch.__version__,
            "reps": args.reps, "gguf_types": gguf_types(), "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(info, indent=1))
    lines = [f"# Quantized-kernel survey ({args.threads} threads, medians of {args.reps})", "",
             f"CPU: {info['cpu']}; flags: {' '.join(info['flags'])}; torch {torch.__version__}.", "",
             "Command: `python -m bench.quant_survey`", "", "## GGUF tensor types of the default pair", ""]
    for f, c in info["gguf_types"].items():
        lines.append(f"- {f}: " + ", ".join(f"{k} x{v}" for k, v in sorted(c.items())))
    lines += ["", "## Time per call (ms); ratio to the same method's 1-row call", ""]
    for k, n in SHAPES:
        lines += [f"### {k} -> {n}", "", "| method | weight MB | 1 row | 5 rows | 16 rows | 5/1 | 16/1 | GB/s at 1 row |",
                  "|---|---|---|---|---|---|---|---|"]
        by = collections.defaultdict(dict)
        for r in rows:
            if (r["in"], r["out"]) == (k, n):
                by[r["method"]][r["rows"]] = r
        for name, d in by.items():
            one = d[1]["ms"]
            lines.append(f"| {name} | {d[1]['weight_MB']} | {one:.3f} | {d[5]['ms']:.3f} | {d[16]['ms']:.3f} | "
                         f"{d[5]['ms'] / one:.2f} | {d[16]['ms'] / one:.2f} | {d[1]['GB_per_s_at_1_row']} |")
        lines.append("")
    (RESULTS / f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("wrote", RESULTS / f"{args.out}.md")


if __name__ == "__main__":
    main()
