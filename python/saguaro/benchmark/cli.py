"""``saguaro bench`` / ``python -m bench.run``: plan, run the comparison, write the results."""
from __future__ import annotations

import argparse
import datetime
import shlex
import sys
from pathlib import Path
from typing import Optional, Sequence

from saguaro.benchmark import methods as methods_mod
from saguaro.benchmark import prompt_suites as prompts_mod
from saguaro.benchmark.harness import BenchConfig, encode_prompts, run_benchmark
from saguaro.benchmark.report import markdown, write_all
from saguaro.speculation_config import SpeculationConfig

DEFAULT_TARGET = "qwen2.5-coder-1.5b"
DEFAULT_DRAFT = "qwen2.5-coder-0.5b"


def build_parser() -> argparse.ArgumentParser:
    """The command line of the benchmark."""
    p = argparse.ArgumentParser(prog="saguaro bench", description=(
        "Measure saguaro AR/SD/SSD and the transformers peers in one run, alternating per prompt, "
        "each pinned to its cores; write JSON + Markdown + PNG under bench/results/."))
    p.add_argument("--suite", choices=prompts_mod.SUITES, default="quick",
                   help="quick: HumanEval 0-7 + MT-Bench one per category; full adds Spec-Bench, 2 per category; "
                        "long: Spec-Bench's long-document questions (summarization, RAG), 2 of each")
    p.add_argument("--prompts", metavar="FILE.jsonl", help="use this JSONL file instead of the suite's prompts")
    p.add_argument("--humaneval", type=int, metavar="N", help="HumanEval problems in the suite (default 8)")
    p.add_argument("--mtbench", type=int, metavar="N", help="MT-Bench questions in the suite (default one per category: 8)")
    p.add_argument("--limit", type=int, metavar="N", help="at most N prompts (sources interleaved)")
    p.add_argument("--target", default=DEFAULT_TARGET, help=f"target model spec (default {DEFAULT_TARGET})")
    p.add_argument("--draft", default=DEFAULT_DRAFT, help=f"draft model spec (default {DEFAULT_DRAFT})")
    p.add_argument("--draft-vocab", type=int, metavar="N",
                   help="saguaro rows: the draft scores only the N lowest ids, special tokens and prompt tokens "
                        "(peers keep the whole vocabulary)")
    p.add_argument("--draft-int8", choices=("weight", "dynamic"),
                   help="saguaro rows: the draft's projections in int8, weight-only or with dynamically quantized "
                        "activations (peers keep the dtype)")
    p.add_argument("--quantized", action="store_true",
                   help="saguaro rows keep the GGUF files' quantized weights (Q4_K, Q6_K, Q5_0, Q8_0) and run the "
                        "quantized kernels (the model llama.cpp computes); otherwise they run --dtype conversions")
    p.add_argument("--dtype", default="bf16", choices=("bf16", "fp32", "fp16"))
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--methods", help="comma-separated subset: ar-1t,ar-2t,sd-1t,sd-2t,ssd,auto,hf-ar,hf-assisted (default all)")
    p.add_argument("--llamacpp", action="store_true",
                   help="add llama.cpp's rows (plain and speculative decoding, draft-max 4 and 8) on the same GGUF "
                        "files; builds llama.cpp once from the llama-cpp-python sdist (about 10 minutes on 2 cores)")
    p.add_argument("--k", type=int, help="draft tokens per round (default: the planner's choice, else SpeculationConfig's)")
    p.add_argument("--sd-k", type=int, help="draft tokens per round of the SD rows (default: --k, or the planner's best K per row)")
    p.add_argument("--fanout", help="SSD fan-out budget M or a list F_0,...,F_K (default: the planner's choice, else SpeculationConfig's)")
    p.add_argument("--saguaro-c", type=float, help="Saguaro constant C (default: the planner's choice, else 1)")
    p.add_argument("--backup", choices=("jit", "fast", "auto"), help="SSD backup (default jit)")
    p.add_argument("--no-plan", action="store_true", help="skip the planner (latency measurement + calibration)")
    p.add_argument("--plan-prompts", type=int, default=16,
                   help="the run's first N prompts are the planner's calibration text (default 16: every prompt of the "
                        "quick suite; two gave a plan's hit rate from ~14 rejections, 47%% predicted vs 72%% measured)")
    p.add_argument("--plan-tokens", type=int, default=32, help="tokens the target generates per calibration prompt")
    p.add_argument("--plan-reps", type=int, default=3, help="repetitions of each latency measurement")
    p.add_argument("--plan-k-max", type=int, default=6, help="largest K the planner measures")
    p.add_argument("--plan-budgets", default="1,2,4,6,8,12,16",
                   help="fan-out budgets M whose tree steps the planner measures (comma-separated)")
    p.add_argument("--plan-only", action="store_true",
                   help="run the planner only: print its choice and predictions, write <name>.plan.json")
    p.add_argument("--isolate", action="store_true", help="one worker process per method (more memory)")
    p.add_argument("--warmup-tokens", type=int, default=4)
    p.add_argument("--out", default=None, help="results directory (default bench/results in the repository)")
    p.add_argument("--name", help="results file name without extension (default <suite>-<UTC date>)")
    p.add_argument("--title", help="title of the Markdown page and plot")
    p.add_argument("--notes", default="", help="a paragraph put at the top of the Markdown page")
    p.add_argument("--no-progress", action="store_true")
    return p


def _prompts(args: argparse.Namespace) -> list[prompts_mod.Prompt]:
    if args.prompts:
        ps = prompts_mod.load_jsonl(args.prompts)
    elif args.suite == "long":
        ps = prompts_mod.long_prompts()
    else:
        he = prompts_mod.human_eval(limit=8 if args.humaneval is None else args.humaneval)
        mt = prompts_mod.mt_bench(per_category=1, limit=args.mtbench)
        groups = [he, mt]
        if args.suite == "full":
            groups.append(prompts_mod.spec_bench(per_category=2))
        ps = prompts_mod.interleave(groups)
    return ps[:args.limit] if args.limit else ps


def _fanout(text: Optional[str]) -> object:
    if text is None:
        return None
    parts = [t for t in text.replace(" ", "").split(",") if t]
    try:
        vals = [int(t) for t in parts]
    except ValueError as exc:
        raise ValueError(f"--fanout must be an integer budget or a comma-separated list of integers, got {text!r}") from exc
    return vals[0] if len(vals) == 1 else vals


def _ints(text: str, flag: str) -> list[int]:
    try:
        vals = [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError as exc:
        raise ValueError(f"{flag} must be comma-separated integers, got {text!r}") from exc
    if not vals or min(vals) < 1:
        raise ValueError(f"{flag} needs integers >= 1, got {text!r}")
    return vals


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the benchmark; returns the process exit code."""
    args = build_parser().parse_args(argv)
    prog = "python -m bench.run" if argv is None else "saguaro bench"
    command = prog + " " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    prompts = _prompts(args)
    fan = _fanout(args.fanout)
    ms = methods_mod.standard_methods(k=args.k, fanout=fan, saguaro_c=args.saguaro_c, backup=args.backup or "jit")
    if args.llamacpp:
        from saguaro.benchmark import llamacpp_peer

        llamacpp_peer.build()
        ms = ms + methods_mod.llamacpp_methods()
    ms = methods_mod.select(ms, args.methods.split(",") if args.methods else None)
    if args.sd_k is not None:
        defaults = SpeculationConfig()
        ms = methods_mod.with_ssd_plan(ms, k=args.k or defaults.k,
                                       fanout=fan if fan is not None else defaults.fanout_budget,
                                       saguaro_c=defaults.saguaro_c if args.saguaro_c is None else args.saguaro_c,
                                       backup=args.backup or "jit", sd_k=args.sd_k)
    cfg = BenchConfig(target=args.target, draft=args.draft, dtype=args.dtype, max_new_tokens=args.max_new_tokens,
                      temperature=args.temperature, seed=args.seed, batch=args.batch,
                      warmup_tokens=args.warmup_tokens, suite="custom" if args.prompts else args.suite,
                      command=command, notes=args.notes, draft_vocab=args.draft_vocab,
                      draft_int8=args.draft_int8, quantized=args.quantized)
    prompt_ids = encode_prompts(prompts, cfg.target, cfg.dtype)
    plan = None
    if not args.no_plan:
        from saguaro.benchmark import planner
        from saguaro.benchmark.methods import available_cores

        calibration = prompt_ids[:max(1, args.plan_prompts)]
        print(f"planner: measuring latencies and calibrating on {len(calibration)} prompt(s)...", file=sys.stderr)
        lat, ranks, dists = planner.measure(
            cfg.target, cfg.draft, cfg.dtype, prompt_ids[0], calibration,
            cores=available_cores()[:2], k_max=args.plan_k_max, reps=args.plan_reps,
            calibration_tokens=args.plan_tokens, budgets=_ints(args.plan_budgets, "--plan-budgets"),
            draft_kw=cfg.draft_load_kwargs(), target_kw=cfg.target_load_kwargs(), temperature=args.temperature,
            seed=args.seed)
        plan = planner.make_plan(lat, ranks, temperature=args.temperature, k_range=range(1, args.plan_k_max + 1),
                                 dists=dists)
        print(f"planner: a = {plan['acceptance']:.3f}, K = {plan['k']}, fan-out {plan['fanout']}, C = {plan['saguaro_c']}, "
              f"predicted SSD {plan['predicted']['saguaro-ssd']:.2f} tok/s", file=sys.stderr)
        if args.plan_only:
            import json

            date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
            out = Path(args.out) if args.out else prompts_mod.repo_root() / "bench" / "results"
            out.mkdir(parents=True, exist_ok=True)
            path = out / f"{args.name or f'plan-{date}'}.plan.json"
            path.write_text(json.dumps(plan, indent=1, default=str) + "\n", encoding="utf-8")
            print(json.dumps({k: v for k, v in plan.items() if k != "latencies"}, indent=1, default=str))
            print(f"wrote {path}", file=sys.stderr)
            return 0
        ms = methods_mod.with_ssd_plan(
            ms, k=args.k or plan["k"], fanout=fan if fan is not None else plan["fanout"],
            saguaro_c=plan["saguaro_c"] if args.saguaro_c is None else args.saguaro_c,
            backup=args.backup or plan["backup"],
            sd_k=args.sd_k or args.k or {"saguaro-sd-1t": plan["sd_k_1t"], "saguaro-sd-2t": plan["sd_k_2t"]})
    results = run_benchmark(cfg, prompts, ms, isolate=args.isolate, progress=not args.no_progress, planner=plan,
                            prompt_ids=prompt_ids)
    if plan is not None:
        from saguaro.benchmark import planner

        results["targets"] = planner.evaluate_targets(plan, results["summary"], results["methods"])
    if cfg.quantized:  # the GGUF bytes per token against the bandwidth measured now, on the run's cores
        from saguaro.benchmark import bandwidth_roofline
        from saguaro.benchmark.llamacpp_peer import gguf_path

        results["roofline"] = bandwidth_roofline.measure(results["methods"], results["summary"], gguf_path(cfg.target),
                                                         gguf_path(cfg.draft), cfg.draft_vocab)
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    name = args.name or f"{cfg.suite}-{date}"
    out = Path(args.out) if args.out else prompts_mod.repo_root() / "bench" / "results"
    paths = write_all(results, out, name, args.title)
    print(markdown(results, args.title))
    print("wrote " + ", ".join(str(p) for p in paths.values()), file=sys.stderr)
    return 0
