"""Model-adapter speed: native vs transformers decode, multi-token extend, tree steps, int8 (weight-only
and dynamic) and pruned-vocabulary drafts.

Usage: python bench/models.py [--models 0.5b,1.5b] [--rounds 7] [--threads 1]

Methods of one model are alternated inside each round (so machine drift hits them alike) and each
reported figure is the median over all rounds. Writes bench/results/models.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch

import saguaro.models as M

PRESET = {"0.5b": "qwen2.5-coder-0.5b", "1.5b": "qwen2.5-coder-1.5b"}
PROMPT = ('from typing import List\n\n\ndef has_close_elements(numbers: List[float], threshold: float) -> bool:\n'
          '    """ Check if in given list of numbers, are any two numbers closer to each other than\n'
          '    given threshold.\n    >>> has_close_elements([1.0, 2.0, 3.0], 0.5)\n    False\n    """\n')


def transformers_twin(lm: M.LoadedModel):
    """A transformers Qwen2ForCausalLM sharing the native model's (already loaded) bf16 weights."""
    import transformers

    cfg = transformers.Qwen2Config(**{k: v for k, v in lm.config.to_hf_dict().items() if k != "architectures"})
    with torch.device("meta"):
        model = transformers.Qwen2ForCausalLM(cfg)
    native = lm.adapter.model
    c = lm.config
    q, kv = c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim
    sd = {"model.embed_tokens.weight": native.embed, "model.norm.weight": native.final_norm.weight,
          "lm_head.weight": native.head.weight}
    for i, layer in enumerate(native.layers):
        p = f"model.layers.{i}."
        at, mlp = layer.attention, layer.mlp
        w, b = at.qkv.weight, at.qkv.bias
        for name, lo, hi in (("q", 0, q), ("k", q, q + kv), ("v", q + kv, q + 2 * kv)):
            sd[f"{p}self_attn.{name}_proj.weight"] = w[lo:hi]
            sd[f"{p}self_attn.{name}_proj.bias"] = b[lo:hi]
        sd[p + "self_attn.o_proj.weight"] = at.out.weight
        sd[p + "mlp.gate_proj.weight"] = mlp.gate_up.weight[: mlp.intermediate]
        sd[p + "mlp.up_proj.weight"] = mlp.gate_up.weight[mlp.intermediate:]
        sd[p + "mlp.down_proj.weight"] = mlp.down.weight
        sd[p + "input_layernorm.weight"] = layer.attn_norm.weight
        sd[p + "post_attention_layernorm.weight"] = layer.mlp_norm.weight
    model.load_state_dict(sd, assign=True, strict=True)
    model.model.rotary_emb = type(model.model.rotary_emb)(config=cfg)  # its buffers were on meta
    return model.eval()


class HFRunner:
    """Drives a transformers model with one DynamicCache, like a plain KV-cache decode loop."""

    def __init__(self, model, prompt: list[int]) -> None:
        from transformers import DynamicCache

        self.model = model
        self.cache = DynamicCache(config=model.config)
        with torch.inference_mode():
            model(input_ids=torch.tensor([prompt]), past_key_values=self.cache, use_cache=True)
        self.base = len(prompt)

    def forward(self, tokens: list[int]) -> torch.Tensor:
        with torch.inference_mode():
            return self.model(input_ids=torch.tensor([tokens]), past_key_values=self.cache, use_cache=True).logits

    def reset(self) -> None:
        n = self.cache.get_seq_length() - self.base
        if n > 0:
            self.cache.crop(-n)


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def bench_model(key: str, rounds: int, steps: int, with_tree: bool, draft_vocab: int = 32768) -> dict:
    t = time.perf_counter()
    lm = M.load(PRESET[key])
    load_s = time.perf_counter() - t
    prompt = lm.tokenizer.encode(PROMPT)
    nat = lm.adapter
    nat.prefill([0], [prompt])
    base = len(prompt)
    hf = HFRunner(transformers_twin(lm), prompt)
    runs: dict[str, Callable[[], list[float]]] = {}

    def decode(adapter) -> Callable[[], list[float]]:
        def run() -> list[float]:
            out = [timed(lambda i=i: adapter.extend([0], [[300 + i]])) for i in range(steps)]
            adapter.truncate(0, base)
            return out
        return run

    def extend5(adapter) -> Callable[[], list[float]]:
        def run() -> list[float]:
            out = timed(lambda: adapter.extend([0], [[11, 12, 13, 14, 15]]))
            adapter.truncate(0, base)
            return [out]
        return run

    def hf_decode() -> list[float]:
        out = [timed(lambda i=i: hf.forward([300 + i])) for i in range(steps)]
        hf.reset()
        return out

    def hf_extend5() -> list[float]:
        out = timed(lambda: hf.forward([11, 12, 13, 14, 15]))
        hf.reset()
        return [out]

    def tree(adapter, m: int, depth: int = 4) -> Callable[[], list[float]]:
        def run() -> list[float]:
            # m branches hanging off the last 3 positions, as an SSD fan-out does
            visible = [base - (i % 3) for i in range(m)]
            return [timed(lambda d=d: adapter.tree_step([0] * m, visible, [400 + i + d for i in range(m)], d))
                    for d in range(depth)]
        return run

    def torch_linear(run: Callable[[], list[float]]) -> Callable[[], list[float]]:
        # the same adapter with saguaro's small-M bf16 kernel switched off (Linear reads this per call)
        def wrapped() -> list[float]:
            old = os.environ.get("SAGUARO_CPU_LINEAR")
            os.environ["SAGUARO_CPU_LINEAR"] = "torch"
            try:
                return run()
            finally:
                if old is None:
                    del os.environ["SAGUARO_CPU_LINEAR"]
                else:
                    os.environ["SAGUARO_CPU_LINEAR"] = old
        return wrapped

    runs["native decode"] = decode(nat)
    runs["native decode (torch linear)"] = torch_linear(decode(nat))
    runs["transformers decode"] = hf_decode
    runs["native extend 5"] = extend5(nat)
    runs["native extend 5 (torch linear)"] = torch_linear(extend5(nat))
    runs["transformers extend 5"] = hf_extend5
    q8 = None
    if with_tree:
        runs["native tree 8"] = tree(nat, 8)
        runs["native tree 16"] = tree(nat, 16)
        runs["native tree 8 (torch linear)"] = torch_linear(tree(nat, 8))
        q8 = M.load(PRESET[key], int8=True).adapter
        q8.prefill([0], [prompt])
        runs["int8 decode"] = decode(q8)
        runs["int8 extend 5"] = extend5(q8)
        runs["int8 tree 8"] = tree(q8, 8)
        # int8 weights and dynamically quantized int8 activations (integer multiply-adds): drafts only
        dq = M.load(PRESET[key], int8="dynamic").adapter
        dq.prefill([0], [prompt])
        runs["int8 dynamic decode"] = decode(dq)
        runs["int8 dynamic extend 5"] = extend5(dq)
        runs["int8 dynamic tree 8"] = tree(dq, 8)
        runs["int8 dynamic tree 16"] = tree(dq, 16)
        dqp = M.load(PRESET[key], int8="dynamic", draft_vocab=draft_vocab).adapter
        dqp.prefill([0], [prompt])
        runs["int8 dynamic pruned decode"] = decode(dqp)
        runs["int8 dynamic pruned tree 8"] = tree(dqp, 8)
        runs["int8 dynamic pruned tree 16"] = tree(dqp, 16)
        # a pruned draft vocabulary (the lowest ids + specials + prompt tokens): drafts only
        pv = M.load(PRESET[key], draft_vocab=draft_vocab).adapter
        pv.prefill([0], [prompt])
        runs["pruned decode"] = decode(pv)
        runs["pruned extend 5"] = extend5(pv)
        runs["pruned tree 8"] = tree(pv, 8)
        runs["pruned tree 16"] = tree(pv, 16)
        f32 = M.load(PRESET[key], dtype=torch.float32).adapter
        f32.prefill([0], [prompt])
        runs["fp32 decode"] = decode(f32)
        runs["fp32 extend 5"] = extend5(f32)
        runs["fp32 tree 8"] = tree(f32, 8)
    for run in runs.values():  # warm-up: pages the mmapped weights in
        run()
    samples: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(rounds):
        for name, run in runs.items():
            samples[name].extend(run())
        print(f"  {key} round {r + 1}/{rounds}: " + ", ".join(
            f"{k} {statistics.median(v):.1f}" for k, v in samples.items()), flush=True)
    med = {k: statistics.median(v) for k, v in samples.items()}
    result = {"preset": PRESET[key], "load_s": load_s, "prompt_tokens": base, "median_ms": med,
              "samples": {k: len(v) for k, v in samples.items()}}
    d = med["native decode"]
    ratios = {"native/transformers decode": d / med["transformers decode"],
              "native extend 5 / native decode": med["native extend 5"] / d,
              "transformers extend 5 / transformers decode": med["transformers extend 5"] / med["transformers decode"],
              "native decode / native decode (torch linear)": d / med["native decode (torch linear)"],
              "native extend 5 (torch linear) / native decode (torch linear)":
                  med["native extend 5 (torch linear)"] / med["native decode (torch linear)"]}
    if with_tree:
        ratios["native tree 8 / native decode"] = med["native tree 8"] / d
        ratios["native tree 16 / native decode"] = med["native tree 16"] / d
        ratios["native tree 8 (torch linear) / native decode (torch linear)"] = (
            med["native tree 8 (torch linear)"] / med["native decode (torch linear)"])
        ratios["int8 decode / native decode"] = med["int8 decode"] / d
        ratios["int8 tree 8 / int8 decode"] = med["int8 tree 8"] / med["int8 decode"]
        dqd = med["int8 dynamic decode"]
        ratios["int8 dynamic decode / native decode"] = dqd / d
        ratios["int8 dynamic extend 5 / int8 dynamic decode"] = med["int8 dynamic extend 5"] / dqd
        ratios["int8 dynamic tree 8 / int8 dynamic decode"] = med["int8 dynamic tree 8"] / dqd
        ratios["int8 dynamic tree 16 / int8 dynamic decode"] = med["int8 dynamic tree 16"] / dqd
        ratios["int8 dynamic tree 8 / native tree 8"] = med["int8 dynamic tree 8"] / med["native tree 8"]
        ratios["int8 dynamic tree 8 / native decode"] = med["int8 dynamic tree 8"] / d
        ratios["int8 dynamic pruned tree 8 / int8 dynamic pruned decode"] = (
            med["int8 dynamic pruned tree 8"] / med["int8 dynamic pruned decode"])
        ratios["int8 dynamic pruned tree 16 / int8 dynamic pruned decode"] = (
            med["int8 dynamic pruned tree 16"] / med["int8 dynamic pruned decode"])
        ratios["int8 dynamic pruned tree 8 / native tree 8"] = med["int8 dynamic pruned tree 8"] / med["native tree 8"]
        ratios["fp32 decode / native decode"] = med["fp32 decode"] / d
        ratios["fp32 extend 5 / fp32 decode"] = med["fp32 extend 5"] / med["fp32 decode"]
        ratios["fp32 tree 8 / fp32 decode"] = med["fp32 tree 8"] / med["fp32 decode"]
        ratios["pruned decode / native decode"] = med["pruned decode"] / d
        ratios["pruned tree 8 / native decode"] = med["pruned tree 8"] / d
        ratios["pruned tree 8 / native tree 8"] = med["pruned tree 8"] / med["native tree 8"]
        ratios["pruned tree 16 / native tree 16"] = med["pruned tree 16"] / med["native tree 16"]
        result["int8_argmax_agreement"] = argmax_agreement(nat, q8, lm.tokenizer)
        result["pruned_argmax_agreement"] = argmax_agreement(nat, pv, lm.tokenizer)
        result["int8_dynamic_argmax_agreement"] = argmax_agreement(nat, dq, lm.tokenizer)
        result["draft_vocab"] = draft_vocab
    result["ratios"] = ratios
    return result


def argmax_agreement(full, q8, tokenizer, n: int = 48) -> float:
    """Teacher-forced: fraction of positions where a cheaper draft's (int8, pruned) argmax equals the
    bf16 draft's."""
    ids = tokenizer.encode(PROMPT + "    for idx, elem in enumerate(numbers):\n        for idx2, elem2 in "
                           "enumerate(numbers):\n            if idx != idx2:\n                distance = abs(elem - elem2)")
    ids = ids[-n:]
    full.prefill([7], [ids[:1]])
    q8.prefill([7], [ids[:1]])
    la, lb = full.extend([7], [ids[1:]]), q8.extend([7], [ids[1:]])
    full.release(7)
    q8.release(7)
    return float((la.argmax(-1) == lb.argmax(-1)).float().mean())


def second_load_seconds(preset: str) -> float:
    """Wall time of a fresh process loading a preset whose conversion is cached (import excluded)."""
    code = ("import time, saguaro.models as M; t = time.perf_counter(); lm = M.load(%r); "
            "print(time.perf_counter() - t)" % preset)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "python": platform.python_version()}


def write_markdown(res: dict, path: Path) -> None:
    m = res["machine"]
    lines = ["# Model adapters: native vs transformers (bf16, CPU)", "",
             f"Machine: {m['cpu']} ({m['cpu_capability']}), torch {m['torch']}, {m['threads']} thread(s). "
             f"Medians over {res['rounds']} alternating rounds; {res['steps']} decode steps per round. "
             "Decode = one new token with a KV cache; extend 5 = one forward of 5 new tokens (a K=4 verify); "
             "tree N = one tree_step of N branch tokens (depths 0-3).", ""]
    for key, r in res["models"].items():
        lines += [f"## {r['preset']}", "", f"Load (conversion cached, in this process): {r['load_s']:.1f} s; "
                  f"second load in a fresh process: {r.get('second_load_s', float('nan')):.1f} s.", "",
                  "| method | median ms |", "|---|---|"]
        lines += [f"| {k} | {v:.1f} |" for k, v in r["median_ms"].items()]
        lines += ["", "| ratio | value |", "|---|---|"]
        lines += [f"| {k} | {v:.2f} |" for k, v in r["ratios"].items()]
        if "int8_argmax_agreement" in r:
            lines += ["", f"int8 draft argmax agreement with the bf16 draft (teacher-forced, 47 positions): "
                          f"{r['int8_argmax_agreement']:.2f}"]
        if "int8_dynamic_argmax_agreement" in r:
            lines += ["", f"int8 dynamic draft argmax agreement with the bf16 draft (same positions): "
                          f"{r['int8_dynamic_argmax_agreement']:.2f}"]
        if "pruned_argmax_agreement" in r:
            lines += ["", f"pruned draft (ids < {r['draft_vocab']} + specials + prompt tokens) argmax agreement "
                          f"with the full draft (same positions): {r['pruned_argmax_agreement']:.2f}"]
        lines.append("")
    if res.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in res["notes"]] + [""]
    path.write_text("\n".join(lines), encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", default="0.5b,1.5b")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=4, help="decode steps per method per round")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--note", action="append", default=[])
    ap.add_argument("--draft-vocab", type=int, default=32768, help="ids the pruned-draft rows score")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    res = {"machine": machine(), "rounds": args.rounds, "steps": args.steps, "models": {}, "notes": args.note}
    for key in args.models.split(","):
        print(f"benchmarking {PRESET[key]}", flush=True)
        res["models"][key] = bench_model(key, args.rounds, args.steps, with_tree=(key == "0.5b"),
                                         draft_vocab=args.draft_vocab)
        res["models"][key]["second_load_s"] = second_load_seconds(PRESET[key])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "models.json").write_text(json.dumps(res, indent=1), encoding="utf-8")
    write_markdown(res, out / "models.md")
    print((out / "models.md").read_text())


if __name__ == "__main__":
    main()
