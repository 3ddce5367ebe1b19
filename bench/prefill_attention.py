"""A prompt's prefill with its attention in saguaro's kernel (the default for bf16 CPU models) against
masked SDPA (how prompts longer than attention.ROW_BY_ROW_MAX rows ran before), on a real model.

One process, the default pair's target on the GGUF blocks (the quick start's model), the runtime's
thread setting (``use_threads``: the kernels on every thread, torch's own operators on one). Prompts:
the chat form of Spec-Bench's longest summarization question, cut to each length. The two variants
alternate, 3 runs each per length; medians. The SDPA variant makes the adapter mask the prefill as it
did before (``attention.kernel_runs`` reported False to it), so its attention is one masked SDPA call a
layer on torch's one thread and its layers run in Python.

    python -m bench.prefill_attention --name zen4

Writes bench/results/prefill-attention-<name>.{json,md} with the CPU flags and the kernel path.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: bench is a package
from bench.quant_survey import cpu_flags, cpu_model  # noqa: E402

import saguaro.models as M  # noqa: E402
from saguaro.benchmark import prompt_suites  # noqa: E402
from saguaro.kernels import quant  # noqa: E402
from saguaro.models import attention  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def measure(model: str, lengths: list[int], threads: int, reps: int) -> dict:
    """{length: {variant: [seconds]}} and whether both variants chose the same first token."""
    lm = M.load(model, quantized=None)
    lm.adapter.use_threads(threads)
    question = prompt_suites.long_prompts(per_category=1)[0]
    ids = lm.tokenizer.encode_chat([{"role": "user", "content": question.text}])
    real = attention.kernel_runs
    variants = {"kernel": real, "masked SDPA": lambda *a: False}
    out: dict = {"prompt": question.id, "prompt_tokens": len(ids), "runs": {}}
    seq = 0
    for n in [n for n in lengths if n <= len(ids)]:
        times: dict[str, list[float]] = {v: [] for v in variants}
        first: dict[str, int] = {}
        for _ in range(reps):
            for name, runs in variants.items():
                attention.kernel_runs = runs
                try:
                    t0 = time.perf_counter()
                    logits = lm.adapter.prefill([seq], [ids[:n]])
                    times[name].append(time.perf_counter() - t0)
                finally:
                    attention.kernel_runs = real
                    lm.adapter.release(seq)
                seq += 1
                first[name] = int(logits[-1].argmax())
        out["runs"][n] = {"seconds": times, "same_first_token": len(set(first.values())) == 1}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="qwen2.5-coder-1.5b")
    ap.add_argument("--lengths", default="128,512,1473", help="prompt lengths in tokens (comma-separated)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--name", required=True)
    args = ap.parse_args(argv)
    res = measure(args.model, [int(x) for x in args.lengths.split(",")], args.threads, args.reps)
    res.update(model=args.model, threads=args.threads, reps=args.reps, cpu=cpu_model(), cpu_flags=cpu_flags(),
               kernel_path=quant.supported_isa(), date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               command=" ".join(["python -m bench.prefill_attention", *(argv if argv is not None else sys.argv[1:])]))
    rows = []
    for n, r in res["runs"].items():
        k, s = statistics.median(r["seconds"]["kernel"]), statistics.median(r["seconds"]["masked SDPA"])
        r.update(kernel_tokens_per_s=n / k, sdpa_tokens_per_s=n / s, speedup=s / k)
        rows.append(f"| {n} | {n / s:.0f} | {n / k:.0f} | **{s / k:.2f}x** | {r['same_first_token']} |")
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"prefill-attention-{args.name}"
    stem.with_suffix(".json").write_text(json.dumps(res, indent=1))
    md = [f"# Prefill: the attention kernel against masked SDPA ({args.model})", "",
          f"- Command: `{res['command']}`",
          f"- Machine: {res['cpu']}; CPU flags: {' '.join(res['cpu_flags'])}; quantized kernel path: "
          f"{res['kernel_path']}; {args.threads} threads (the kernels; torch's operators on one). {res['date']}.",
          f"- Prompt: {res['prompt']} (chat form, {res['prompt_tokens']} tokens) cut to each length; the model on "
          f"its GGUF blocks; variants alternating, {args.reps} runs each, medians.", "",
          "| prompt tokens | masked SDPA tok/s | kernel tok/s | kernel / SDPA | same first token |",
          "|---:|---:|---:|---:|---|", *rows, ""]
    stem.with_suffix(".md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
