"""The GPU check of issue 23, in one process: random-weight models of real shapes, trace replay.

Usage: python3 bench/gpu.py --out DIR [--budget-s 480] [--pairs 1.5b,7b,32b] [--trace FILE.json]
       python3 bench/gpu.py --smoke --out DIR          (tiny shapes on the CPU: the tests run this)

For each pair (Qwen2.5-1.5B/0.5B, Qwen2.5-7B/0.5B, Qwen3-32B/Qwen3-0.6B by default, bf16 on cuda, one
GPU, batch 1, greedy) it measures:

- verify ms for K+1 tokens and decode ms (1 token) of the target; the draft's step, trunk (K+1) and
  tree step at M branches (adapter calls, median of --reps, what the loop pays);
- AR tokens/s beside the HBM roofline (weight bytes per token over the device-to-device copy bandwidth
  measured in the same run);
- SD and SSD tokens/s under trace replay (saguaro.benchmark.trace_replay: the trace's accepted counts
  and cache hits forced round by round; the forwards are real), SSD once at the trace's hit rate and
  once at 100% forced hits, each with its round / verify ratio and whether the runtime realised the
  trace exactly;
- the speed model's predictions from the measured latencies and each error (one GPU: the model's
  "hit round = max(verify, tree work)" assumes the draft overlaps; the serial figure does not);

plus the kernels' µs (bench/kernels.py's workloads, B = 1 and 32, K = 4, CUDA) and the speed model fed
the paper's setting (saguaro.benchmark.paper_setting). Each figure runs in its own try/except (a
failure is logged with its reason and the rest goes on); --budget-s skips what is left once spent
(pairs run in --pairs order, the biggest last). JSON and Markdown go to --out after every step, so a
run cut short by an outer timeout still leaves what it measured. Every replayed figure says so.
"""
from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Optional

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python3 bench/gpu.py` puts bench/ first, not the repository
    sys.path.insert(0, str(ROOT))

import saguaro  # noqa: E402
from saguaro.benchmark import paper_setting  # noqa: E402
from saguaro.benchmark.speed_model import (Latencies, ar_speed, expected_tokens, fit_acceptance,  # noqa: E402
                                           sd_speed, ssd_predict_at_hit_rate)
from saguaro.benchmark.trace_replay import (ReplayDraft, ReplayTarget, ReplayTrace, check_realised,  # noqa: E402
                                            random_decoder, real_shape, weight_bytes_per_token)
from saguaro.models.config import ModelConfig  # noqa: E402
from saguaro.models.native_adapter import NativeModelAdapter  # noqa: E402

#: name -> (target shape, draft shape); the pair shares the target's vocabulary width
PAIRS = {"1.5b": ("qwen2.5-1.5b", "qwen2.5-0.5b"), "7b": ("qwen2.5-7b", "qwen2.5-0.5b"),
         "32b": ("qwen3-32b", "qwen3-0.6b")}
#: the sequence id the latency calls use (far from the engine's own ids)
_LATENCY_SEQ = 1 << 40
REPLAY_NOTE = ("trace replay: random-weight models of the real shapes; SD/SSD rounds forced to the trace's "
               "accepted counts and cache hits (saguaro.benchmark.trace_replay); forwards, tree steps and "
               "kernels run in their real amounts")


# ------------------------------------------------------------------------------------------ bookkeeping
class Check:
    """Figures, errors and skips of one run; each step in its own try/except under one time budget."""

    def __init__(self, out: Path, budget_s: float, meta: dict[str, Any]) -> None:
        self.out, self.budget_s, self.t0 = out, budget_s, time.monotonic()
        self.result: dict[str, Any] = {**meta, "figures": {}, "errors": {}, "skipped": [], "log": []}

    def left(self) -> float:
        return self.budget_s - (time.monotonic() - self.t0)

    def step(self, name: str, fn: Callable[[], Any]) -> Any:
        """Run fn; store its value under figures[name], or its error; skip when the budget is spent."""
        if self.left() <= 0:
            self.result["skipped"].append(name)
            self.say(f"SKIP {name}: the {self.budget_s:.0f} s budget is spent")
            return None
        t = time.monotonic()
        try:
            value = fn()
        except Exception as e:  # one failure must leave the other figures
            self.result["errors"][name] = f"{type(e).__name__}: {e}"
            self.say(f"FAIL {name}: {type(e).__name__}: {e}\n{traceback.format_exc(limit=4)}")
            value = None
        else:
            self.result["figures"][name] = value
            self.say(f"ok   {name} ({time.monotonic() - t:.1f} s)")
        self.save()
        return value

    def say(self, line: str) -> None:
        stamp = f"[{time.monotonic() - self.t0:6.1f} s] "
        self.result["log"].append(stamp + line.splitlines()[0])
        print(stamp + line, flush=True)

    def save(self) -> None:
        self.result["wall_s"] = time.monotonic() - self.t0
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "gpu-check.json").write_text(json.dumps(self.result, indent=1, default=str))
        (self.out / "gpu-check.md").write_text(markdown(self.result))


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def median_ms(fn: Callable[[], Any], reps: int, device: str) -> float:
    """Median wall ms of fn over reps calls after one warm-up call."""
    fn()
    times = []
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


# ------------------------------------------------------------------------------------------ figures
def copy_bandwidth(device: str, nbytes: int) -> dict[str, float]:
    """Device-to-device copy bandwidth (bytes read + written per second, best of 5)."""
    a = torch.empty(nbytes, dtype=torch.uint8, device=device)
    b = torch.empty_like(a)
    best = min(median_ms(lambda: b.copy_(a), 1, device) for _ in range(5))
    del a, b
    return {"bytes": nbytes, "bytes_per_s": 2 * nbytes / (best / 1e3)}


def kernel_us(device: str, batches: tuple[int, ...], ks: tuple[int, ...], reps: int) -> list[dict[str, Any]]:
    """bench/kernels.py's workloads on `device`: median µs per call (and GPU-only µs on CUDA)."""
    from bench import kernels as kb

    rows = []
    for B in batches:
        for k in ks:
            for name, (kernel, _) in kb.workloads(B, k, device).items():
                kernel()
                us = statistics.median(kb.timed(kernel, device) for _ in range(reps))
                row = {"kernel": name, "B": B, "K": k, "V": kb.V, "device": device, "median_us": us}
                if device.startswith("cuda"):
                    row["device_us"] = kb.device_time_us(kernel)
                    # bytes one call must read at least: the [B, K+1, V] fp32 logits (sample_rows: B(K+1) rows)
                    row["logits_gb_per_s"] = B * (k + 1) * kb.V * 4 / (row["device_us"] * 1e-6) / 1e9
                rows.append(row)
    return rows


class Pair:
    """A target and a draft of random weights, their adapters and the latencies measured on them."""

    def __init__(self, name: str, target_cfg: ModelConfig, draft_cfg: ModelConfig, *, device: str,
                 dtype: torch.dtype, max_context: int, scratch: int) -> None:
        self.name, self.device = name, device
        self.target_cfg, self.draft_cfg = target_cfg, draft_cfg
        self.target = NativeModelAdapter(random_decoder(target_cfg, dtype=dtype, device=device, seed=1),
                                         max_context=max_context, scratch_tokens=scratch, eos_token_ids=[])
        self.draft = NativeModelAdapter(random_decoder(draft_cfg, dtype=dtype, device=device, seed=2),
                                        max_context=max_context, scratch_tokens=scratch, eos_token_ids=[])
        self.target_bytes = weight_bytes_per_token(target_cfg, dtype)
        self.draft_bytes = weight_bytes_per_token(draft_cfg, dtype)

    def latencies(self, k: int, tree_ms: list[int], prompt: list[int], reps: int) -> dict[str, Any]:
        """Adapter-call medians: target decode / verify(K+1), draft step / trunk(K+1) / tree step(M)."""
        dev, seq = self.device, _LATENCY_SEQ
        out: dict[str, Any] = {}
        try:
            for role, ad in (("target", self.target), ("draft", self.draft)):
                ad.prefill([seq], [prompt])
                n = ad.length(seq)

                def extend(tokens: int, ad=ad, n=n) -> None:
                    ad.extend([seq], [[7] * tokens])
                    ad.truncate(seq, n)

                out[f"{role}_decode_ms"] = median_ms(lambda: extend(1), reps, dev)
                out[f"{role}_extend_ms"] = {k + 1: median_ms(lambda: extend(k + 1), reps, dev)}
                graphs, ad._graphs = ad._graphs, None  # the same calls launched op by op (CUDA graphs off)
                try:
                    if graphs is not None:
                        out[f"{role}_decode_eager_ms"] = median_ms(lambda: extend(1), reps, dev)
                        out[f"{role}_extend_eager_ms"] = {k + 1: median_ms(lambda: extend(k + 1), reps, dev)}
                finally:
                    ad._graphs = graphs
                out[f"{role}_graphs"] = ad.graph_stats()
            out["target_verify_ms"] = out.pop("target_extend_ms")
            if "target_extend_eager_ms" in out:
                out["target_verify_eager_ms"] = out.pop("target_extend_eager_ms")
            out["draft_tree_ms"] = {}
            n = self.draft.length(seq)
            for m in tree_ms:  # depth 0 of a tree of m branches over the prompt (the visible lengths differ)
                out["draft_tree_ms"][m] = median_ms(
                    lambda m=m: self.draft.tree_step([seq] * m, [n - 1 - (i % 2) for i in range(m)], list(range(m)), 0),
                    reps, dev)
        finally:
            self.target.release(seq)
            self.draft.release(seq)
        return out

    def free(self) -> None:
        self.target = self.draft = None  # type: ignore[assignment]
        _free_device(self.device)


def run_engine(pair: Pair, mode: str, trace: Optional[ReplayTrace], k: int, fanout: int, prompt: list[int],
               tokens: int) -> dict[str, Any]:
    """One request through saguaro.Engine; replayed (SD/SSD) when a trace is given."""
    sp = saguaro.SamplingParams(max_new_tokens=tokens, ignore_eos=True)
    kw: dict[str, Any] = dict(mode=mode, device=pair.device)
    replay_target = None
    if mode == "ar":
        target, draft = pair.target, None
    else:
        assert trace is not None
        draft = ReplayDraft(pair.draft)
        replay_target = ReplayTarget(pair.target, trace, draft)
        target, draft = replay_target, draft
        kw.update(k=k, fanout=fanout, backup="jit")
    from saguaro.models.loading import LoadedModel

    t_loaded = target.loaded(f"{pair.name}-target") if replay_target else LoadedModel(target, None, pair.name)
    with saguaro.Engine(target=t_loaded, draft=draft.loaded(f"{pair.name}-draft") if draft else None, **kw) as eng:
        [result] = eng.generate([prompt], sp)
        m = eng.metrics()
    rounds = m.get("batched_rounds") or 0
    out = {"mode": mode, "replayed": replay_target is not None,
           "decode_tokens_per_s": result.metrics.get("decode_tokens_per_s"),
           "generated_tokens": len(result.token_ids), "rounds": rounds,
           "tokens_per_round": m.get("tokens_per_round"), "accepted_histogram": m.get("accepted_histogram"),
           "cache_hit_rate": m.get("cache_hit_rate"), "fanout": m.get("fanout"),
           "round_ms": 1e3 * m["round_s"] / rounds if rounds else None,
           "verify_ms": 1e3 * m["target_verify_s"] / rounds if rounds else None}
    if out["round_ms"] and out["verify_ms"]:
        out["round_over_verify"] = out["round_ms"] / out["verify_ms"]
    out["target_graphs"] = pair.target.graph_stats()
    out["draft_graphs"] = pair.draft.graph_stats() if mode != "ar" else None
    if replay_target is not None:
        out["trace"] = trace.source if trace else None
        out["replay_problems"] = check_realised(m, replay_target)
        out["replay_realised"] = not out["replay_problems"]
    return out


def predictions(lat: dict[str, Any], runs: dict[str, dict], k: int) -> dict[str, Any]:
    """The speed model from the measured latencies, beside each measured tokens/s."""
    s = 1e-3
    verify = {1: lat["target_decode_ms"] * s, k + 1: lat["target_verify_ms"][k + 1] * s}
    ext = {k + 1: lat["draft_extend_ms"][k + 1] * s}
    tree = {m: v * s for m, v in lat["draft_tree_ms"].items()}
    L = Latencies(verify, dict(verify), dict(verify), lat["draft_decode_ms"] * s, lat["draft_decode_ms"] * s,
                  ext, dict(ext), tree, dict(tree))
    out: dict[str, Any] = {}

    def row(name: str, predicted: float, measured: Optional[float], **extra: Any) -> None:
        out[name] = {"predicted": predicted, "measured": measured,
                     "error": predicted / measured - 1 if measured else None, **extra}

    if "ar" in runs:
        row("ar", ar_speed(L), runs["ar"]["decode_tokens_per_s"])
    for name in ("sd", "ssd", "ssd_all_hits"):
        r = runs.get(name)
        if not r or not r.get("accepted_histogram"):
            continue
        a = fit_acceptance(r["accepted_histogram"][: k + 1])
        if name == "sd":
            row(name, sd_speed(L, a, k), r["decode_tokens_per_s"], acceptance=a)
            continue
        fan = r.get("fanout") or [1] * (k + 1)
        h = r.get("cache_hit_rate") or 0.0
        p = ssd_predict_at_hit_rate(L, a, k, fan, h)
        m_tree = min(tree, key=lambda m: abs(m - sum(fan)))
        # one GPU, no overlap: the tree work adds to each verification instead of hiding behind it
        tp = ext[k + 1] + k * tree[m_tree]
        serial = expected_tokens(a, k) / (h * (verify[k + 1] + tp) + (1 - h) * (k * L.draft_step + verify[k + 1] + tp))
        row(name, p.tokens_per_s, r["decode_tokens_per_s"], acceptance=a, hit_rate=h,
            serial_predicted=serial, round_over_verify_predicted=p.round_over_verify)
    return out


# ------------------------------------------------------------------------------------------ the run
def smoke_configs() -> dict[str, tuple[ModelConfig, ModelConfig]]:
    """Tiny shapes of both families for --smoke (the CPU test of this script)."""
    def cfg(arch: str, layers: int, hidden: int) -> ModelConfig:
        return ModelConfig(architecture=arch, vocab_size=256, hidden_size=hidden, intermediate_size=2 * hidden,
                           num_layers=layers, num_heads=4, num_kv_heads=2, head_dim=hidden // 4,
                           max_position_embeddings=1024, tie_word_embeddings=True,
                           attention_bias=arch == "qwen2", qk_norm=arch == "qwen3")
    return {"tiny-qwen2": (cfg("qwen2", 2, 64), cfg("qwen2", 1, 32)),
            "tiny-qwen3": (cfg("qwen3", 2, 64), cfg("qwen3", 1, 32))}


def real_configs(names: list[str]) -> dict[str, tuple[ModelConfig, ModelConfig]]:
    out = {}
    for n in names:
        t, d = PAIRS[n]
        tc = real_shape(t, max_position_embeddings=4096)
        out[n] = (tc, real_shape(d, vocab_size=tc.vocab_size, max_position_embeddings=4096))
    return out


def load_trace(args: argparse.Namespace) -> ReplayTrace:
    if args.trace:
        return ReplayTrace.from_dict(json.loads(Path(args.trace).read_text()))
    return ReplayTrace.generate(args.acceptance, args.hit_rate, args.k, rounds=256, seed=args.seed)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="directory for gpu-check.json and gpu-check.md")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes, few tokens, on the CPU (tests)")
    ap.add_argument("--device", default=None, help="cuda (default when visible) or cpu")
    ap.add_argument("--budget-s", type=float, default=480.0, help="skip what is left once this much time is spent")
    ap.add_argument("--pairs", default="1.5b,7b,32b", help=f"pairs in run order, of {', '.join(PAIRS)}")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--fanout", type=int, default=6, help="fan-out budget M (geometric schedule)")
    ap.add_argument("--tree-m", default="6,15", help="branch counts M to time the draft's tree step at")
    ap.add_argument("--tokens", type=int, default=128, help="new tokens per engine run")
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--reps", type=int, default=5, help="adapter calls per latency (median)")
    ap.add_argument("--trace", default=None, help="a ReplayTrace JSON (e.g. recorded on the CPU with the real pair)")
    ap.add_argument("--acceptance", type=float, default=0.8, help="generated trace: per-token acceptance a")
    ap.add_argument("--hit-rate", type=float, default=0.8, help="generated trace: cache hit rate h")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-kernels", action="store_true")
    args = ap.parse_args(argv)

    device = args.device or ("cpu" if args.smoke or not torch.cuda.is_available() else "cuda")
    if args.smoke:
        args.tokens, args.reps, args.prompt_tokens = min(args.tokens, 24), 2, 8
        args.tree_m = "6" if args.tree_m == "6,15" else args.tree_m
    cuda = device.startswith("cuda")
    if not cuda:  # like the engine's workers (1 thread each); torch's pool on a busy small host is far slower
        torch.set_num_threads(1)
    dtype = torch.bfloat16 if cuda else torch.float32
    trace = load_trace(args)
    meta = {"replayed": True, "trace_replay": REPLAY_NOTE, "trace": trace.source,
            "trace_acceptance": trace.acceptance, "trace_hit_rate": trace.hit_rate,
            "device": torch.cuda.get_device_name(0) if cuda else f"cpu ({platform.processor() or platform.machine()})",
            "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
            "kernels_have_cuda": _kernels_cuda(), "build": _build_info(), "dtype": str(dtype).removeprefix("torch."),
            "config": {"k": args.k, "fanout_budget": args.fanout, "tokens": args.tokens, "reps": args.reps,
                       "prompt_tokens": args.prompt_tokens, "budget_s": args.budget_s, "smoke": args.smoke,
                       "pairs": args.pairs, "batch": 1, "temperature": 0.0, "backup": "jit"},
            "command": " ".join(sys.argv)}
    check = Check(Path(args.out), args.budget_s, meta)
    check.say(f"{meta['device']}, torch {meta['torch']}, CUDA {meta['cuda']}; {REPLAY_NOTE}; trace {trace.source}")

    paper = check.step("paper_prediction", paper_setting.predict)
    if paper:
        print(paper_setting.markdown(paper), flush=True)
    bw = check.step("copy_bandwidth", lambda: copy_bandwidth(device, (64 << 20) if args.smoke else (2 << 30)))
    if not args.no_kernels:
        check.step("kernels", lambda: kernel_us(device, (1,) if args.smoke else (1, 32), (2,) if args.smoke else (4,),
                                                 1 if args.smoke else 20))

    configs = smoke_configs() if args.smoke else real_configs([p.strip() for p in args.pairs.split(",") if p.strip()])
    prompt = [(17 * i + 5) % 200 + 10 for i in range(args.prompt_tokens)]
    tree_ms = [int(m) for m in args.tree_m.split(",")]
    max_context = args.prompt_tokens + args.tokens + 2 * args.k + 16
    scratch = max(max(tree_ms), args.fanout) * (args.k + 1) + 16
    for name, (tc, dc) in configs.items():
        built: list[Pair] = []

        def build(name=name, tc=tc, dc=dc) -> dict[str, Any]:
            built.append(Pair(name, tc, dc, device=device, dtype=dtype, max_context=max_context, scratch=scratch))
            return {"target_bytes": built[0].target_bytes, "draft_bytes": built[0].draft_bytes,
                    "target": _shape(tc), "draft": _shape(dc)}

        if check.step(f"{name}/build", build) is None:
            built.clear()
            _free_device(device)
            continue
        pair = built.pop()
        lat = check.step(f"{name}/latencies", lambda: pair.latencies(args.k, tree_ms, prompt, args.reps))
        runs: dict[str, dict] = {}
        ar = check.step(f"{name}/ar", lambda: run_engine(pair, "ar", None, args.k, args.fanout, prompt, args.tokens))
        if ar:
            runs["ar"] = ar
            if bw:
                roof = bw["bytes_per_s"] / pair.target_bytes
                ar.update(roofline_tokens_per_s=roof, of_roofline=(ar["decode_tokens_per_s"] or 0) / roof)
        all_hits = ReplayTrace(trace.k, trace.accepted, (True,) * len(trace), trace.source + "; every round a hit")
        for key, mode, tr in (("sd", "sd", trace), ("ssd", "ssd", trace), ("ssd_all_hits", "ssd", all_hits)):
            r = check.step(f"{name}/{key}", lambda: run_engine(pair, mode, tr, args.k, args.fanout, prompt, args.tokens))
            if r:
                runs[key] = r
        if lat:
            check.step(f"{name}/predictions", lambda: predictions(lat, runs, args.k))
        pair.free()
        del pair
    check.say("done" + ("" if not check.result["errors"] else f"; {len(check.result['errors'])} figure(s) failed"))
    check.save()
    print(markdown(check.result), flush=True)
    return 0


def _shape(c: ModelConfig) -> str:
    return (f"{c.architecture} L{c.num_layers} d{c.hidden_size} ff{c.intermediate_size} h{c.num_heads}/{c.num_kv_heads}"
            f"x{c.head_dim} V{c.vocab_size}{' tied' if c.tie_word_embeddings else ''}")


def _free_device(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def _kernels_cuda() -> Optional[bool]:
    try:
        return bool(saguaro._core.kernels_have_cuda)
    except Exception:
        return None


def _build_info() -> Any:
    try:
        return saguaro.build_info()
    except Exception as e:  # the report must still be written
        return f"{type(e).__name__}: {e}"


# ------------------------------------------------------------------------------------------ the page
def _f(x: Any, fmt: str = "{:.2f}") -> str:
    return fmt.format(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else "–"


def markdown(res: dict[str, Any]) -> str:
    """The check's page: one row per pair, the kernels, the paper prediction, errors and skips."""
    f = res["figures"]
    k = res["config"]["k"]
    lines = ["# GPU check (bench/gpu.py) — TRACE REPLAY", "",
             f"Device: {res['device']}; torch {res['torch']}, CUDA {res['cuda']}, saguaro CUDA kernels: "
             f"{res.get('kernels_have_cuda')}; {res['dtype']}; batch 1, greedy, K = {k}, fan-out budget "
             f"{res['config']['fanout_budget']}, {res['config']['tokens']} new tokens.", "",
             f"**{res['trace_replay']}.** Trace: {res['trace']} (a = {res['trace_acceptance']:.3f}, "
             f"h = {res['trace_hit_rate']:.3f}).", ""]
    pairs = sorted({key.split("/")[0] for key in list(f) + list(res["errors"]) if "/" in key})
    if pairs:
        lines += ["| pair | decode ms | verify ms (K+1) | draft step ms | tree step ms (M) | AR tok/s | roofline "
                  "tok/s | of roofline | SD tok/s | SSD tok/s | SSD 100% hits | SSD / SD | round/verify (h) | "
                  "round/verify (100%) | replay realised |", "|" + "---|" * 15]
        for p in pairs:
            lat = f.get(f"{p}/latencies") or {}
            ar, sd, ssd, allh = (f.get(f"{p}/{x}") or {} for x in ("ar", "sd", "ssd", "ssd_all_hits"))
            tree = ", ".join(f"{v:.2f} ({m})" for m, v in (lat.get("draft_tree_ms") or {}).items()) or "–"
            ok = [r.get("replay_realised") for r in (sd, ssd, allh) if r]
            ratio = ssd.get("decode_tokens_per_s") / sd["decode_tokens_per_s"] if ssd.get(
                "decode_tokens_per_s") and sd.get("decode_tokens_per_s") else None
            lines.append(
                f"| {p} | {_f(lat.get('target_decode_ms'))} | {_f((lat.get('target_verify_ms') or {}).get(k + 1))} | "
                f"{_f(lat.get('draft_decode_ms'))} | {tree} | {_f(ar.get('decode_tokens_per_s'), '{:.1f}')} | "
                f"{_f(ar.get('roofline_tokens_per_s'), '{:.1f}')} | {_f(ar.get('of_roofline'), '{:.0%}')} | "
                f"{_f(sd.get('decode_tokens_per_s'), '{:.1f}')} | {_f(ssd.get('decode_tokens_per_s'), '{:.1f}')} | "
                f"{_f(allh.get('decode_tokens_per_s'), '{:.1f}')} | {_f(ratio)} | {_f(ssd.get('round_over_verify'))} | "
                f"{_f(allh.get('round_over_verify'))} | {'yes' if ok and all(ok) else ('NO' if ok else '–')} |")
        lines += ["", "CUDA graphs (saguaro.models.step_graphs) against the same calls launched op by op:", "",
                  "| pair | target decode ms (graphs / eager) | verify ms (graphs / eager) | draft step ms "
                  "(graphs / eager) | target graphs |", "|---|---|---|---|---|"]
        for p in pairs:
            lat = f.get(f"{p}/latencies") or {}
            g = lat.get("target_graphs") or {}
            lines.append(
                f"| {p} | {_f(lat.get('target_decode_ms'))} / {_f(lat.get('target_decode_eager_ms'))} | "
                f"{_f((lat.get('target_verify_ms') or {}).get(k + 1))} / "
                f"{_f((lat.get('target_verify_eager_ms') or {}).get(k + 1))} | "
                f"{_f(lat.get('draft_decode_ms'))} / {_f(lat.get('draft_decode_eager_ms'))} | "
                f"{'on' if g.get('enabled') else ('off: ' + str(g.get('disabled_reason')) if g else 'off')} |")
        lines += ["", "Speed model from the measured latencies (predicted / measured tokens/s, error; SSD serial = "
                  "no overlap of draft and target on the one GPU):", "",
                  "| pair | AR | SD | SSD | SSD serial | SSD 100% hits |", "|---|---|---|---|---|---|"]
        for p in pairs:
            pr = f.get(f"{p}/predictions") or {}

            def cell(key: str, field: str = "predicted") -> str:
                r = pr.get(key)
                if not r:
                    return "–"
                err = r[field] / r["measured"] - 1 if r.get("measured") else None
                return f"{_f(r[field], '{:.1f}')} / {_f(r.get('measured'), '{:.1f}')} ({_f(err, '{:+.0%}')})"
            lines.append(f"| {p} | {cell('ar')} | {cell('sd')} | {cell('ssd')} | {cell('ssd', 'serial_predicted')} | "
                         f"{cell('ssd_all_hits')} |")
    bw = f.get("copy_bandwidth")
    if bw:
        lines += ["", f"Device-to-device copy bandwidth: {bw['bytes_per_s'] / 1e9:.0f} GB/s (read + write, "
                  f"{bw['bytes'] >> 20} MiB buffer); the roofline is weight bytes per token over it."]
    if f.get("kernels"):
        lines += ["", "Kernels (bench/kernels.py workloads, V = 151,936): µs per call", "",
                  "| kernel | device | B | K | call µs | GPU-only µs | logits GB/s |", "|---|---|---|---|---|---|---|"]
        for r in f["kernels"]:
            lines.append(f"| {r['kernel']} | {r['device']} | {r['B']} | {r['K']} | {r['median_us']:.0f} | "
                         f"{_f(r.get('device_us'), '{:.1f}')} | {_f(r.get('logits_gb_per_s'), '{:.0f}')} |")
    if f.get("paper_prediction"):
        lines += ["", "Speed model fed the paper's setting (saguaro.benchmark.paper_setting; Qwen3-32B/0.6B):", "",
                  paper_setting.markdown(f["paper_prediction"])]
    if res["errors"]:
        lines += ["", "Failed figures:", ""] + [f"- {k_}: {v}" for k_, v in res["errors"].items()]
    if res["skipped"]:
        lines += ["", f"Skipped (budget {res['config']['budget_s']:.0f} s spent): {', '.join(res['skipped'])}"]
    lines += ["", f"Wall time {res.get('wall_s', 0):.0f} s. Command: `{res['command']}`", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
