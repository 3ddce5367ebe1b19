"""Load benchmark of ``saguaro serve``: requests/s, time to first token and inter-token latency
(p50/p99) at several client concurrencies, for AR, SD and SSD, beside llama.cpp's server as the peer.

For each mode it starts a server on a free loopback port (``saguaro.serve.launch_server``), warms it
up, then at each concurrency runs a fixed number of streaming completions (greedy, ``ignore_eos`` so
every request has the same length) from that many concurrent clients. Results go to bench/results/serve-load-<name>.json and
.md. The modes ``llama.cpp`` and ``llama.cpp-sd`` run llama.cpp's own server on the same GGUF files (plain,
and with its speculative decoding and the same draft; ``saguaro.benchmark.llamacpp_server``), one slot per
client and every core; compare them with saguaro's quantized weights (``-- --quantized``). Examples:

    python -m bench.serve_load --target smollm2-135m --draft smollm2-135m --name smollm2 --requests 16
    python -m bench.serve_load --alternate --modes ssd ar llama.cpp llama.cpp-sd --name NAME -- --quantized
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: bench is a package
from bench.quant_survey import cpu_flags, cpu_model  # noqa: E402

from saguaro.serve.launch import launch_server  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
PROMPTS = ["def quicksort(arr):", "import numpy as np\n\ndef normalize(x):", "class LinkedList:\n",
           "# read a CSV file and print the mean of each column\n", "def is_prime(n):",
           "async def fetch(url):", "SELECT name, COUNT(*) FROM", "def binary_search(a, x):"]
SERVED = "bench"
#: the peer's modes: llama.cpp's server, plain and with its speculative decoding
PEER_MODES = ("llama.cpp", "llama.cpp-sd")
SAGUARO_MODES = ("ar", "sd", "ssd")


def percentile(values: list[float], q: float) -> Optional[float]:
    """The q-quantile (0..1) by linear interpolation; None for no values."""
    if not values:
        return None
    v = sorted(values)
    pos = q * (len(v) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def server_args(args: argparse.Namespace, mode: str) -> list[str]:
    """``saguaro serve`` options for one mode (saguaro.serve.launch_server picks the port)."""
    cmd = ["--mode", mode, "--served-model-name", SERVED, "--log-level", "warning", "--dtype", args.dtype,
           "--max-batch", str(max(args.concurrency))]
    if args.target:
        cmd += ["--target", args.target]
    if args.draft and mode != "ar":
        cmd += ["--draft", args.draft]
    return cmd + args.engine_args


def start(args: argparse.Namespace, mode: str) -> Any:
    """The context manager of one mode's server: ``saguaro serve``, or llama.cpp's for the peer's modes."""
    if mode not in PEER_MODES:
        return launch_server(server_args(args, mode), startup_timeout=args.startup_timeout, stop_timeout=120)
    from saguaro.benchmark.llamacpp_peer import gguf_path
    from saguaro.benchmark.llamacpp_server import launch_llama_server
    from saguaro.models.loading import default_pair

    target, draft = args.target or default_pair()[0], args.draft or default_pair()[1]
    return launch_llama_server(gguf_path(target), gguf_path(draft) if mode == "llama.cpp-sd" else None,
                               threads=os.cpu_count() or 1, parallel=max(args.concurrency),
                               startup_timeout=args.startup_timeout)


async def _one(http: Any, prompt: str, max_tokens: int, peer: bool = False) -> dict[str, Any]:
    """One streaming completion: its TTFT, per-token gaps, tokens and SSD figures. ``peer``: llama.cpp's
    server, through its own /completion endpoint, whose chunks carry their token ids."""
    body = {"model": SERVED, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True,
            "stream": True, "return_token_ids": True}
    if peer:
        body = {"prompt": prompt, "n_predict": max_tokens, "temperature": 0, "ignore_eos": True, "stream": True,
                "return_tokens": True}
    start = time.perf_counter()
    first: Optional[float] = None
    last = start
    gaps: list[float] = []
    tokens = 0
    figures: dict[str, Any] = {}
    # llama-server closes kept-alive connections after a few requests, and a request sent on one it is
    # closing fails: the peer gets a connection per request (loopback: a fraction of a millisecond).
    headers = {"Connection": "close"} if peer else None
    async with http.stream("POST", "/completion" if peer else "/v1/completions", json=body, headers=headers) as r:
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {await r.aread()!r}")
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(chunk["error"]["message"])
            figures = chunk.get("saguaro", figures)
            if peer:
                ids = chunk.get("tokens") or []
            else:
                ids = chunk["choices"][0].get("token_ids") or [] if chunk["choices"] else []
            n = len(ids)
            if n == 0:
                continue
            now = time.perf_counter()
            if first is None:
                first = now
                n -= 1
            elif n:
                gaps += [(now - last) / n] * n
            tokens += len(ids)
            last = now
    return {"ttft_s": (first or last) - start, "gaps_s": gaps, "tokens": tokens, "total_s": last - start,
            "saguaro": figures}


async def _level(url: str, concurrency: int, requests: int, max_tokens: int, peer: bool = False) -> dict[str, Any]:
    import httpx

    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=1800,
                                 limits=httpx.Limits(max_connections=concurrency + 2)) as http:
        async def guarded(i: int) -> dict[str, Any]:
            async with sem:
                return await _one(http, PROMPTS[i % len(PROMPTS)], max_tokens, peer)

        t0 = time.perf_counter()
        runs = await asyncio.gather(*(guarded(i) for i in range(requests)))
        wall = time.perf_counter() - t0
    ttft = [r["ttft_s"] for r in runs]
    gaps = [g for r in runs for g in r["gaps_s"]]
    tokens = sum(r["tokens"] for r in runs)
    proposed = sum(r["saguaro"].get("proposed_tokens", 0) for r in runs)
    accepted = sum(r["saguaro"].get("accepted_tokens", 0) for r in runs)
    rounds = sum(r["saguaro"].get("rounds", 0) for r in runs)
    return {"concurrency": concurrency, "requests": requests, "wall_s": wall, "requests_per_s": requests / wall,
            "tokens_per_s": tokens / wall, "ttft_p50_s": percentile(ttft, 0.5), "ttft_p99_s": percentile(ttft, 0.99),
            "itl_p50_s": percentile(gaps, 0.5), "itl_p99_s": percentile(gaps, 0.99),
            "tokens_per_round": tokens / rounds if rounds else None,
            "acceptance_rate": accepted / proposed if proposed else None,
            "_raw": {"ttft": ttft, "gaps": gaps, "tokens": tokens, "rounds": rounds, "proposed": proposed,
                     "accepted": accepted}}


def merge_repeats(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One level measured several times (alternated with the other modes): the median throughput of the
    runs (each run's figure kept in ``tokens_per_s_runs``), latency percentiles over every request of
    every run, and the runs' tokens per round and acceptance pooled."""
    import statistics

    raw = [r["_raw"] for r in runs]
    ttft = [x for r in raw for x in r["ttft"]]
    gaps = [x for r in raw for x in r["gaps"]]
    tokens, rounds = sum(r["tokens"] for r in raw), sum(r["rounds"] for r in raw)
    proposed, accepted = sum(r["proposed"] for r in raw), sum(r["accepted"] for r in raw)
    return {"concurrency": runs[0]["concurrency"], "requests": sum(r["requests"] for r in runs),
            "repeats": len(runs), "wall_s": sum(r["wall_s"] for r in runs),
            "requests_per_s": statistics.median(r["requests_per_s"] for r in runs),
            "tokens_per_s": statistics.median(r["tokens_per_s"] for r in runs),
            "tokens_per_s_runs": [r["tokens_per_s"] for r in runs],
            "ttft_p50_s": percentile(ttft, 0.5), "ttft_p99_s": percentile(ttft, 0.99),
            "itl_p50_s": percentile(gaps, 0.5), "itl_p99_s": percentile(gaps, 0.99),
            "tokens_per_round": tokens / rounds if rounds else None,
            "acceptance_rate": accepted / proposed if proposed else None}


def paired_ratio(a: dict[str, Any], b: dict[str, Any]) -> tuple[float, float, float]:
    """Median, min and max over the repeats of a's tokens/s over b's in the same repeat (a level of two
    modes alternated; a single run gives its one ratio three times)."""
    import statistics

    ra = a.get("tokens_per_s_runs") or [a["tokens_per_s"]]
    rb = b.get("tokens_per_s_runs") or [b["tokens_per_s"]]
    ratios = [x / y for x, y in zip(ra, rb) if y]
    return statistics.median(ratios), min(ratios), max(ratios)


def _runtime_figures(url: str, mode: str) -> dict[str, float]:
    import httpx

    if mode in PEER_MODES:
        return {}

    out = {}
    for line in httpx.get(url + "/metrics", timeout=60).text.splitlines():
        if line.startswith(("saguaro_runtime_", "saguaro_draft_hidden_fraction", 'saguaro_backups_total')):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every mode at every concurrency; the result record."""
    record: dict[str, Any] = {
        "name": args.name, "target": args.target or "default pair", "draft": args.draft or "default pair",
        "dtype": args.dtype, "max_tokens": args.max_tokens, "requests_per_level": args.requests,
        "engine_args": args.engine_args, "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "cpu": cpu_model(),
                                                "flags": cpu_flags()},
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "modes": {}}
    record["alternated"] = bool(args.alternate)
    if args.alternate:
        return _run_alternating(args, record)
    for mode in args.modes:
        with start(args, mode) as server:
            asyncio.run(_level(server.url, 2, 2, 4, mode in PEER_MODES))  # warm-up
            levels = []
            for c in args.concurrency:
                levels.append(_public(_measured_level(server, mode, c, args)))
            record["modes"][mode] = {"levels": levels, "runtime": _runtime_figures(server.url, mode)}
    return record


def _measured_level(server: Any, mode: str, c: int, args: argparse.Namespace) -> dict[str, Any]:
    try:
        lv = asyncio.run(_level(server.url, c, max(args.requests, c), args.max_tokens, mode in PEER_MODES))
    except Exception as e:
        exit_status = server.proc.poll()
        raise RuntimeError(f"{mode} at {c} clients failed ({e!r}); its server "
                           f"{'is still up' if exit_status is None else f'exited with {exit_status}'}; "
                           f"its log ends with:\n{server.log_tail(40)}") from e
    print(f"{mode} c={c}: {lv['requests_per_s']:.2f} req/s, {lv['tokens_per_s']:.1f} tok/s, "
          f"TTFT p50 {lv['ttft_p50_s'] * 1e3:.0f} ms, ITL p50 {lv['itl_p50_s'] * 1e3:.1f} ms", file=sys.stderr, flush=True)
    return lv


def _public(level: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in level.items() if not k.startswith("_")}


def _run_alternating(args: argparse.Namespace, record: dict[str, Any]) -> dict[str, Any]:
    """Every mode's server up at once (the idle ones cost memory, not CPU); each concurrency level runs
    against every mode in turn, the order rotating per level and per repeat, so a slow spell of a shared
    machine falls on all modes alike; with --repeat N each level runs N times per mode so."""
    record["repeats"] = args.repeat
    with contextlib.ExitStack() as stack:
        servers = {m: stack.enter_context(start(args, m)) for m in args.modes}
        for m, server in servers.items():
            asyncio.run(_level(server.url, 2, 2, 4, m in PEER_MODES))  # warm-up
        levels: dict[str, list[dict[str, Any]]] = {m: [] for m in args.modes}
        turn = 0
        for c in args.concurrency:
            runs: dict[str, list[dict[str, Any]]] = {m: [] for m in args.modes}
            for _ in range(args.repeat):
                order = args.modes[turn % len(args.modes):] + args.modes[: turn % len(args.modes)]
                turn += 1
                for m in order:
                    runs[m].append(_measured_level(servers[m], m, c, args))
            for m in args.modes:
                levels[m].append(merge_repeats(runs[m]) if args.repeat > 1 else _public(runs[m][0]))
        for m, server in servers.items():
            record["modes"][m] = {"levels": levels[m], "runtime": _runtime_figures(server.url, m)}
    return record


def markdown(record: dict[str, Any]) -> str:
    """The result as a Markdown page."""
    def ms(x: Optional[float]) -> str:
        return "n/a" if x is None else f"{x * 1e3:.1f}"

    lines = [f"# saguaro serve load: {record['name']}", "",
             f"Target {record['target']}, draft {record['draft']} ({record['dtype']}); {record['requests_per_level']} "
             f"streaming greedy completions of {record['max_tokens']} tokens per level (at least one per client); "
             f"{record['machine']['cpus']} CPUs, {record['date']}. Extra engine options: "
             f"{' '.join(record['engine_args']) or 'none'}.",
             f"CPU: {record['machine'].get('cpu', 'not recorded')}; flags: "
             f"{' '.join(record['machine'].get('flags', [])) or 'not recorded'}.", "",
             "| mode | clients | req/s | tok/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms | tokens/round |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for mode, data in record["modes"].items():
        for lv in data["levels"]:
            tpr = "n/a" if lv["tokens_per_round"] is None else f"{lv['tokens_per_round']:.2f}"
            lines.append(f"| {mode} | {lv['concurrency']} | {lv['requests_per_s']:.2f} | {lv['tokens_per_s']:.1f} | "
                         f"{ms(lv['ttft_p50_s'])} | {ms(lv['ttft_p99_s'])} | {ms(lv['itl_p50_s'])} | "
                         f"{ms(lv['itl_p99_s'])} | {tpr} |")
    ratios = []
    if "ar" in record["modes"]:
        base = {lv["concurrency"]: lv for lv in record["modes"]["ar"]["levels"]}

        def vs_ar(lv: dict[str, Any]) -> str:
            med, lo, hi = paired_ratio(lv, base[lv["concurrency"]])
            return f"{lv['concurrency']}: {med:.2f}" + (f" ({lo:.2f}-{hi:.2f})" if lv.get("repeats", 1) > 1 else "")
        ratios += [f"{mode} / ar tok/s at " + ", ".join(vs_ar(lv) for lv in data["levels"] if lv["concurrency"] in base)
                   for mode, data in record["modes"].items() if mode != "ar" and mode not in PEER_MODES]
    peers = [m for m in PEER_MODES if m in record["modes"]]
    if peers:  # against the peer's faster mode at each level
        best: dict[int, float] = {}
        for m in peers:
            for lv in record["modes"][m]["levels"]:
                best[lv["concurrency"]] = max(best.get(lv["concurrency"], 0.0), lv["tokens_per_s"])
        ratios += [f"{mode} / llama.cpp's best tok/s at " + ", ".join(
            f"{lv['concurrency']}: {lv['tokens_per_s'] / best[lv['concurrency']]:.2f}"
            for lv in data["levels"] if best.get(lv["concurrency"]))
            for mode, data in record["modes"].items() if mode not in PEER_MODES]
    if ratios:
        repeats = record.get("repeats", 1)
        alternated = ("Modes alternated at each level (all servers up at once)"
                      + (f", {repeats} times: tok/s are the medians of the runs, latencies over all their "
                         "requests, ratios the medians (and ranges) of the runs' paired ratios. " if repeats > 1 else ". "))
        lines += ["", (alternated if record.get("alternated") else "Modes run one after the other. ")
                  + "; ".join(ratios) + "."]
    lines += ["", "Runtime figures after each mode's run (rounds, rows, backups, draft time hidden):", ""]
    for mode, data in record["modes"].items():
        if mode in PEER_MODES:
            lines.append(f"- {mode}: llama.cpp's server (llama-server, every core, one slot per client"
                         + (", its speculative decoding with the same draft, draft-max 4)" if mode.endswith("-sd") else ")"))
            continue
        rt = data["runtime"]
        rounds = rt.get("saguaro_runtime_rounds_total", 0)
        rows = rt.get("saguaro_runtime_round_rows_total", 0)
        jit = int(rt.get('saguaro_backups_total{kind="jit"}', 0))
        fast = int(rt.get('saguaro_backups_total{kind="fast"}', 0))
        hidden = rt.get("saguaro_draft_hidden_fraction", 0)
        lines.append(f"- {mode}: {int(rounds)} rounds, mean batch {rows / rounds if rounds else 0:.2f} rows, "
                     f"backups jit {jit} / fast {fast}, draft hidden fraction {hidden:.2f}")
    return "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", default=None, help="target model (default: the default pair)")
    p.add_argument("--draft", default=None, help="draft model (default: the default pair)")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--modes", nargs="+", default=list(SAGUARO_MODES), choices=[*SAGUARO_MODES, *PEER_MODES])
    p.add_argument("--concurrency", nargs="+", type=int, default=[1, 4, 16])
    p.add_argument("--requests", type=int, default=32, help="requests per level (at least one per client)")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--name", default="default-pair", help="the result files' name: serve-load-NAME.{json,md}")
    p.add_argument("--startup-timeout", type=float, default=900.0)
    p.add_argument("--alternate", action="store_true",
                   help="keep every mode's server up and alternate the modes at each level (needs the memory of all)")
    p.add_argument("--repeat", type=int, default=1,
                   help="with --alternate: run each level this many times per mode, alternating (medians and paired ratios)")
    p.add_argument("--append", action="store_true",
                   help="add these modes to an existing serve-load-NAME.json (run the modes one at a time)")
    p.add_argument("engine_args", nargs="*", help="more `saguaro serve` options after --, e.g. -- --k 3")
    args = p.parse_args(argv)
    if args.repeat < 1 or (args.repeat > 1 and not args.alternate):
        p.error("--repeat takes an integer >= 1, and more than 1 only with --alternate")
    record = run(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    base = RESULTS / f"serve-load-{args.name}"
    if args.append and base.with_suffix(".json").is_file():
        earlier = json.loads(base.with_suffix(".json").read_text())
        record["modes"] = {**earlier.get("modes", {}), **record["modes"]}
    base.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    base.with_suffix(".md").write_text(markdown(record))
    print(markdown(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
