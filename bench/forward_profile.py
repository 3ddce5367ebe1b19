"""Where a native forward's time goes: one-token decode vs an N-token verification (extend) or, with
--tree, a draft's tree step of N branches, split into the projections (saguaro's packed bf16 kernel,
or fbgemm's int8 kernel with --int8 dynamic), attention, RMSNorm, rotary and the rest (Python glue,
residual adds, SiLU), plus the output head alone.

Usage: python bench/forward_profile.py [--model qwen2.5-coder-1.5b] [--rows 5] [--rounds 7]
       python bench/forward_profile.py --model qwen2.5-coder-0.5b --tree --rows 16 [--int8 dynamic]

Each component is timed by wrapping its Python entry point (the wrappers add a few microseconds per
call, the same for both forwards); the decode and the multi-row forward alternate inside each round and
the figures are medians over rounds (a tree's figures: the mean over its depths 0-3 in each round). A
model with a decoder chain (saguaro.models.decoder_chain: quantized bf16 on the CPU, all layers in one
call) is split on its Python layers, and the chain's own total follows each of those forwards: the row
"total (decoder chain)", what the engine runs.
Writes bench/results/forward-profile-<model>[-quantized][-int8dyn][-vocab<V>][-tree<N>][-<T>t][-<tag>].{json,md}.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: bench is a package
from bench.models import PROMPT, machine  # noqa: E402  (the same prompt and machine record)
from bench.quant_survey import cpu_flags  # noqa: E402

import saguaro.models as M  # noqa: E402
from saguaro.kernels import attention as attention_kernel  # noqa: E402
from saguaro.kernels import quant  # noqa: E402
from saguaro.models import attention, linear, norm, quant_linear  # noqa: E402

COMPONENTS = ("projections", "attention", "rmsnorm", "rotary")


@contextlib.contextmanager
def _instrument(acc: dict[str, float]):
    """Accumulate seconds per component in `acc` while inside (module-level patches, undone on exit)."""
    undo: list[Callable[[], None]] = []

    def wrap(owner: object, name: str, label: str) -> Callable:
        fn = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)

        def timed(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                acc[label] += time.perf_counter() - t

        setattr(owner, name, timed)
        undo.append(lambda: setattr(owner, name, fn))
        return timed

    try:
        wrap(linear.Linear, "_small", "projections")
        wrap(linear.DynamicInt8Linear, "forward_float", "projections")
        wrap(quant_linear.QuantLinear, "_run", "projections")  # the head's too (it is also timed alone)
        wrap(attention_kernel, "causal_attention", "attention")
        wrap(attention_kernel, "branch_attention", "attention")
        wrap(norm.RMSNorm, "__call__", "rmsnorm")
        wrap(attention, "apply_rotary", "rotary")  # attention.py's own import of rotary.apply_rotary
        yield
    finally:
        for u in reversed(undo):
            u()


def profile(spec: str, rows: int, rounds: int, int8: str = "none", tree: bool = False,
            draft_vocab: int | None = None, quantized: bool = False, threads: int = 1) -> dict:
    lm = M.load(spec, dtype=torch.bfloat16, device="cpu", int8=False if int8 == "none" else int8,
                draft_vocab=draft_vocab, num_threads=threads, **({"quantized": True} if quantized else {}))
    ad = lm.adapter
    prompt = lm.tokenizer.encode(PROMPT) if lm.tokenizer is not None else list(range(1000, 1064))
    ad.prefill([0], [prompt])
    base = ad.length(0)
    acc: dict[str, float] = collections.defaultdict(float)
    depths = 4  # a tree of depth K = 3: the draft's steps 0..3

    def run(n: int) -> int:
        """One multi-row forward of n rows (a decode when n == 1); returns how many forwards it ran."""
        if tree and n > 1:
            for d in range(depths):
                ad.tree_step([0] * n, [base] * n, [400 + i + d for i in range(n)], d)
            return depths
        ad.extend([0], [[11 + i for i in range(n)]])
        return 1

    chain = ad.model.chain  # saguaro.models.decoder_chain: all layers in one call (quantized bf16 CPU)

    def chained(n: int) -> float:
        """ms per forward of n rows through the decoder chain (no components: they run inside one call)."""
        ad.model.chain = chain
        try:
            t = time.perf_counter()
            per = run(n)
            total = time.perf_counter() - t
            ad.truncate(0, base)
            return total * 1e3 / per
        finally:
            ad.model.chain = None

    ad.model.chain = None  # the components are measured on the Python layers, whose steps they wrap

    def forward(n: int) -> dict[str, float]:
        acc.clear()
        t = time.perf_counter()
        per = run(n)
        total = time.perf_counter() - t
        ad.truncate(0, base)  # also discards the tree
        out = {c: acc.get(c, 0.0) * 1e3 / per for c in COMPONENTS}
        out["other"] = total * 1e3 / per - sum(out.values())
        out["total"] = total * 1e3 / per
        return out

    for n in (1, rows):  # warm up before instrumenting too
        forward(n)
        if chain is not None:
            chained(n)
    samples: dict[int, list[dict[str, float]]] = {1: [], rows: []}
    with _instrument(acc):
        for _ in range(rounds):
            for n in (1, rows):
                samples[n].append(forward(n))
                if chain is not None:  # alternated with the Python layers' forward of the same rows
                    samples[n][-1]["total (decoder chain)"] = chained(n)
    ad.model.chain = chain
    med = {n: {k: statistics.median(s[k] for s in ss) for k in ss[0]} for n, ss in samples.items()}
    vocab = ad.draft_vocabulary  # a pruned vocabulary scores with its own head
    head = vocab.logits if vocab is not None else ad.model.head.forward_float
    head_rows = int(vocab.ids.numel()) if vocab is not None else ad.model.head.out_features
    head_ms = {}
    for n in (1, rows):
        x = torch.randn(n, lm.config.hidden_size, dtype=torch.bfloat16)
        ts = []
        for _ in range(rounds):
            t = time.perf_counter()
            head(x)
            ts.append((time.perf_counter() - t) * 1e3)
        head_ms[n] = statistics.median(ts)
    return {"model": spec, "rows": rows, "rounds": rounds, "threads": threads, "int8": int8, "tree": tree, "draft_vocab": draft_vocab,
            "quantized": quantized, "kernel_path": quant.path_name() if quantized else None,
            "median_ms": {str(n): v for n, v in med.items()},
            "head_ms": {str(n): v for n, v in head_ms.items()},
            "qkv+o+mlp+head (multiply-adds per row)": _projection_macs(ad.model, lm.config, head_rows),
            "weight_bytes": _quant_bytes(ad.model) if quantized else None}


def _quant_bytes(model) -> int:
    """Bytes of the GGUF blocks every projection and the head read per token."""
    lins = [model.head] + [p for lay in model.layers
                           for p in (lay.attention.qkv, lay.attention.out, lay.mlp.gate_up, lay.mlp.down)]
    return sum(p.qweight.nbytes for p in lins)


def _projection_macs(model, config, head_rows: int | None = None) -> int:
    """Multiply-adds of every projection for one row (the packed kernel's work per token)."""
    h = config.hidden_size
    total = 0
    for lay in model.layers:
        a, m = lay.attention, lay.mlp
        total += a.qkv.out_features * h + a.out.out_features * a.h * a.d
        total += m.gate_up.out_features * h + m.down.out_features * m.intermediate
    return total + (model.head.out_features if head_rows is None else head_rows) * h


def stem(model: str, rows: int, int8: str, tree: bool, draft_vocab: int | None = None,
         quantized: bool = False, threads: int = 1, tag: str | None = None) -> str:
    """The results' file name: forward-profile-<model>[-quantized][-int8dyn][-vocab<V>][-tree<N>][-<T>t][-<tag>]
    (a tag names the machine or the build, so one machine's page never replaces another's)."""
    return (f"forward-profile-{model}" + ("-quantized" if quantized else "") + ("-int8dyn" if int8 == "dynamic" else "")
            + (f"-vocab{draft_vocab}" if draft_vocab else "") + (f"-tree{rows}" if tree else "")
            + (f"-{threads}t" if threads > 1 else "") + (f"-{tag}" if tag else ""))


def write(res: dict, out: Path) -> Path:
    rows = res["rows"]
    d, e = res["median_ms"]["1"], res["median_ms"][str(rows)]
    macs = res["qkv+o+mlp+head (multiply-adds per row)"]
    int8, tree = res.get("int8", "none"), res.get("tree", False)
    what = f"a tree step of {rows} branches" if tree else f"{rows}-token extend"
    kind = "int8 dynamic weights, bf16 activations" if int8 == "dynamic" else "bf16"
    if res.get("quantized"):
        kind = f"GGUF blocks, {res['kernel_path']} kernels"
    if res.get("draft_vocab"):
        kind += f"; draft vocabulary pruned to the {res['draft_vocab']} lowest ids + specials + the prompt's"
    col = f"tree {rows}" if tree else f"extend {rows}"
    n_threads = res.get("threads", 1)
    threads = f"{n_threads} thread" + ("s" if n_threads > 1 else "")
    weight_bytes = 1 if int8 == "dynamic" else 2
    if res.get("quantized"):
        weight_bytes = res["weight_bytes"] / macs  # the GGUF blocks' bytes per multiply-add
    lines = [f"# Forward profile: {res['model']} decode vs {what} ({kind}, {threads})", "",
             f"Machine: {res['machine']['cpu']} ({res['machine']['cpu_capability']}), torch {res['machine']['torch']}"
             + (f"; CPU flags: {' '.join(res['flags'])}" if res.get("flags") else "") + ". "
             f"Medians over {res['rounds']} alternating rounds (bench/forward_profile.py).", "",
             f"| component | decode ms | {col} ms | ratio |", "|---|---|---|---|"]
    for k in (*COMPONENTS, "other", "total", "total (decoder chain)"):
        if k not in d:
            continue
        lines.append(f"| {k} | {d[k]:.1f} | {e[k]:.1f} | {e[k] / d[k]:.2f} |" if d[k] > 0 else
                     f"| {k} | {d[k]:.1f} | {e[k]:.1f} | – |")
    lines += ["", f"Output head alone: {res['head_ms']['1']:.1f} ms (1 row), {res['head_ms'][str(rows)]:.1f} ms ({rows} rows).",
              "", f"Projections: {macs / 1e9:.2f} G multiply-adds per row, {macs * weight_bytes / 1e9:.2f} GB of "
              f"{'GGUF-block' if res.get('quantized') else 'int8' if weight_bytes == 1 else 'bf16'} weights. "
              f"Decode streams them at {macs * weight_bytes / d['projections'] / 1e6:.1f} GB/s; "
              f"{rows} rows run {rows * macs / e['projections'] / 1e6:.1f} G multiply-adds/s.", ""]
    if res.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in res["notes"]] + [""]
    path = out / (stem(res["model"], rows, int8, tree, res.get("draft_vocab"), res.get("quantized", False),
                        res.get("threads", 1), res.get("tag")) + ".md")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="qwen2.5-coder-1.5b")
    ap.add_argument("--rows", type=int, default=5, help="tokens of the extend (K + 1), or branches with --tree")
    ap.add_argument("--tree", action="store_true", help="profile a tree step of --rows branches (depths 0-3)")
    ap.add_argument("--int8", choices=("none", "dynamic"), default="none",
                    help="dynamic: the draft's int8 weights and activations (fbgemm), as --draft-int8 dynamic")
    ap.add_argument("--draft-vocab", type=int, default=None,
                    help="score only the N lowest ids + specials + the prompt's tokens (as bench.run --draft-vocab)")
    ap.add_argument("--quantized", action="store_true", help="the GGUF blocks on saguaro's quantized kernels")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1, help="the model's kernel threads (its num_threads)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--note", action="append", default=[])
    ap.add_argument("--tag", default=None, help="appended to the page's name: the machine or the build (e.g. icelake)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    res = profile(args.model, args.rows, args.rounds, args.int8, args.tree, args.draft_vocab, args.quantized,
                  args.threads)
    res["machine"], res["notes"], res["flags"], res["tag"] = machine(), args.note, cpu_flags(), args.tag
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    page = write(res, out)
    page.with_suffix(".json").write_text(json.dumps(res, indent=1), encoding="utf-8")
    print(page.read_text())


if __name__ == "__main__":
    main()
