"""Where the draft runs: a worker thread of the engine vs a draft-server process, on the same two cores.

Rows (greedy, batch 1, the same prompts, alternating, medians): AR on core 0 (1 thread); SD and SSD
with the draft as a thread of the engine (target pinned to core 0, draft to core 1); SD and SSD with
the draft in a ``saguaro draft-server`` process pinned to core 1 (loopback, frames over gloo). The
process rows show what the wire costs, and what separate interpreters save: no GIL shared between the
target's and the draft's Python glue. Per row: tokens/s, tokens per round, cache hit rate, the wire's
bytes per round and the time the target waited for the draft. Results: bench/results/remote-draft-<name>.{json,md}.

    python -m bench.remote_draft --name default-pair-greedy-b1
    python -m bench.remote_draft --target smollm2-135m --draft smollm2-135m --dtype float32 --name smollm2 --reps 1
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.quant_survey import cpu_flags, cpu_model  # noqa: E402

from saguaro import Engine, SamplingParams  # noqa: E402
from saguaro.distributed.draft_process import DraftProcess  # noqa: E402
from saguaro.models import load  # noqa: E402
from saguaro.models.loading import default_pair  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
PROMPTS = ["def quicksort(arr):", "import numpy as np\n\ndef normalize(x):", "class LinkedList:\n",
           "def is_prime(n):"]


def _rows(args: argparse.Namespace, target: Any, draft: Any, addresses: list[str]) -> dict[str, Engine]:
    one = dict(target_threads=1, draft_threads=1, target_cores=[0], k=args.k)
    return {
        "ar-1t": Engine(target, mode="ar", target_threads=1, target_cores=[0]),
        "sd-thread": Engine(target, draft, mode="sd", draft_cores=[1], **one),
        "ssd-thread": Engine(target, draft, mode="ssd", draft_cores=[1], **one),
        # a draft-server serves one target at a time: one server per row
        "sd-process": Engine(target, addresses[0], mode="sd", target_threads=1, target_cores=[0], k=args.k),
        "ssd-process": Engine(target, addresses[1], mode="ssd", target_threads=1, target_cores=[0], k=args.k),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default=None)
    p.add_argument("--draft", default=None)
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    p.add_argument("--quantized", action="store_true")
    p.add_argument("--k", type=int, default=2)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--name", required=True)
    args = p.parse_args(argv)
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("this comparison needs two cores (the target on one, the draft on the other)")
    t_spec, d_spec = args.target or default_pair()[0], args.draft or default_pair()[1]
    dtype = getattr(torch, args.dtype)
    target = load(t_spec, dtype=dtype, quantized=args.quantized)
    draft = load(d_spec, dtype=dtype, quantized=args.quantized)
    servers = [DraftProcess(d_spec, threads=1, cores=[1], dtype=args.dtype, quantized=args.quantized) for _ in range(2)]
    engines = _rows(args, target, draft, [s.address for s in servers])
    sp = SamplingParams(max_new_tokens=args.max_new_tokens, ignore_eos=True)
    runs: dict[str, list[dict]] = {name: [] for name in engines}
    reference: dict[str, list[int]] = {}
    try:
        for e in engines.values():  # warm-up: first calls, draft prefill paths
            e.generate(PROMPTS[0], SamplingParams(max_new_tokens=8))
        for rep in range(args.reps):
            for prompt in PROMPTS:
                for name, e in (engines.items() if rep % 2 == 0 else reversed(list(engines.items()))):
                    before = e.metrics()
                    t0 = time.perf_counter()
                    out = e.generate(prompt, sp)[0]
                    took = time.perf_counter() - t0
                    after = e.metrics()
                    ref = reference.setdefault(prompt, out.token_ids) if name == "ar-1t" else reference.get(prompt)
                    runs[name].append(_figures(before, after, len(out.token_ids), took,
                                               exact=ref is None or out.token_ids == ref))
                    print(f"rep {rep} {name:12s} {runs[name][-1]['tokens_per_s']:.2f} tok/s", flush=True)
    finally:
        for e in engines.values():
            e.close()
        for s in servers:
            s.stop()
    table = {name: _median(rs) for name, rs in runs.items()}
    info = {"machine": cpu_model(), "flags": cpu_flags(), "cores": sorted(os.sched_getaffinity(0)),
            "platform": platform.platform(), "torch": torch.__version__, "target": t_spec, "draft": d_spec,
            "dtype": args.dtype, "quantized": args.quantized, "k": args.k, "max_new_tokens": args.max_new_tokens,
            "reps": args.reps, "prompts": PROMPTS, "load_average_at_end": os.getloadavg(),
            "command": "python -m bench.remote_draft " + " ".join(argv if argv is not None else sys.argv[1:])}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"remote-draft-{args.name}.json").write_text(json.dumps({"info": info, "rows": table, "runs": runs}, indent=1))
    (RESULTS / f"remote-draft-{args.name}.md").write_text(_markdown(info, table))
    print(_markdown(info, table))
    return 0


def _figures(before: dict, after: dict, tokens: int, seconds: float, exact: bool) -> dict:
    d = lambda k: float(after.get(k, 0.0)) - float(before.get(k, 0.0))  # noqa: E731
    rounds = d("batched_rounds")
    lookups = sum(after.get("lookups_per_position", [])) - sum(before.get("lookups_per_position", []))
    hits = sum(after.get("hits_per_position", [])) - sum(before.get("hits_per_position", []))
    out = {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds, "exact": exact,
           "tokens_per_round": tokens / rounds if rounds else None,
           "hit_rate": hits / lookups if lookups else None,
           "waited_s": d("wait_for_tree_s") + d("backup_s")}
    wa, wb = after["draft_location"].get("wire"), before["draft_location"].get("wire")
    if wa is not None:
        out["bytes_per_round"] = ((wa["bytes_out"] + wa["bytes_in"]) - (wb["bytes_out"] + wb["bytes_in"])) / rounds \
            if rounds else None
    return out


def _median(rs: list[dict]) -> dict:
    out: dict[str, Any] = {"exact": all(r["exact"] for r in rs), "runs": len(rs)}
    for key in ("tokens_per_s", "tokens_per_round", "hit_rate", "waited_s", "bytes_per_round"):
        vals = [r[key] for r in rs if r.get(key) is not None]
        out[key] = statistics.median(vals) if vals else None
    return out


def _markdown(info: dict, table: dict) -> str:
    ar = table["ar-1t"]["tokens_per_s"]
    lines = [f"# Draft as a thread vs a draft-server process: {info['target']} / {info['draft']}", "",
             f"{info['machine']}, cores {info['cores']}, flags {' '.join(info['flags'])}; torch {info['torch']}; "
             f"{info['dtype']}{' quantized' if info['quantized'] else ''}, K = {info['k']}, greedy, batch 1, "
             f"{len(info['prompts'])} prompts x {info['max_new_tokens']} tokens x {info['reps']} reps, rows alternating "
             f"(medians); load average at the end {info['load_average_at_end'][0]:.2f}.", "",
             f"Command: `{info['command']}`", "",
             "| row | tokens/s | vs AR | tokens/round | cache hits | B/round on the wire | target waited for the draft (s/request) | tokens == AR |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in table.items():
        f = lambda v, spec: "" if v is None else format(v, spec)  # noqa: E731
        lines.append(f"| {name} | {r['tokens_per_s']:.2f} | {r['tokens_per_s'] / ar:.2f}x | {f(r['tokens_per_round'], '.2f')} | "
                     f"{f(r['hit_rate'], '.0%')} | {f(r['bytes_per_round'], '.0f')} | {f(r['waited_s'], '.2f')} | "
                     f"{'yes' if r['exact'] else 'NO'} |")
    for mode in ("sd", "ssd"):
        lines.append("")
        lines.append(f"{mode.upper()}: process / thread = "
                     f"{table[mode + '-process']['tokens_per_s'] / table[mode + '-thread']['tokens_per_s']:.2f}x")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
