"""What the README's quick start gives a user: its ``saguaro generate`` command as a user runs it (a new
process: load, the cached auto choice, 128 tokens), with the default weights and with each variant given
(default: ``--no-quantized``, the bf16 conversion), alternating, medians.

Per run: the process's wall time and peak resident memory (``resource.getrusage`` of the child), and the
decode tokens/s and mode from its speed summary. The first run of each variant is a warm-up (it may
calibrate ``mode="auto"`` or convert the files once) and is reported apart.
Results: bench/results/quick-start-<name>.{json,md}.

    python -m bench.quick_start --name default-vs-bf16-zen4
"""
from __future__ import annotations

import argparse
import json
import re
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.quant_survey import cpu_flags, cpu_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
SUMMARY = re.compile(r"^\[(?P<mode>[^\]]+)\] (?P<tokens>\d+) tokens, (?P<tps>[\d.]+) tokens/s")


def quick_start_line() -> str:
    """The README's quick-start bash line that ends with ``saguaro generate ...`` (install steps
    included); ValueError unless the "Quick start" section's bash blocks hold exactly one. The CLI's
    quick-start tests run this line and this benchmark times its last step."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    lines = [ln.strip() for b in blocks for ln in b.splitlines() if "saguaro generate" in ln]
    if len(lines) != 1:
        raise ValueError(f"expected one quick-start line running saguaro generate in README.md, found {lines}")
    return lines[0]


def quick_start_argv() -> list[str]:
    """The quick-start line's last step, ``saguaro generate ...``, as argv."""
    return shlex.split(quick_start_line().split("&&")[-1].strip())


def run_once(argv: list[str], timeout_s: float) -> dict[str, Any]:
    """One user run in a child process: wall time, the child's peak RSS (the largest of this process's
    children: run it in a fresh interpreter, _peak_child), the speed summary."""
    cmd = [sys.executable, "-m", "saguaro", *argv[1:]]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    if r.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({r.returncode}): {r.stderr[-2000:]}")
    m = next((SUMMARY.match(ln) for ln in reversed(r.stderr.splitlines()) if SUMMARY.match(ln)), None)
    if m is None:
        raise RuntimeError(f"no speed summary in the output of {shlex.join(cmd)}: {r.stderr[-2000:]}")
    return {"wall_s": wall, "peak_rss_mib": peak / 1024, "mode": m["mode"],
            "tokens": int(m["tokens"]), "tokens_per_s": float(m["tps"])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", action="append", default=None, metavar="FLAGS",
                   help="extra flags of a compared run (repeatable; default: --no-quantized)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--timeout", type=float, default=1800.0)
    p.add_argument("--name", required=True)
    args = p.parse_args(argv)
    base = quick_start_argv()
    variants = {"default": base, **{v: base + shlex.split(v) for v in (args.variant or ["--no-quantized"])}}
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    warm: dict[str, dict[str, Any]] = {}
    for rep in range(args.reps + 1):
        for name, av in variants.items():
            res = _peak_child(av, args.timeout)
            (runs[name].append(res) if rep else warm.__setitem__(name, res))
            print(f"[{rep}] {name}: {res}", file=sys.stderr, flush=True)
    rows = {}
    for name, rs in runs.items():
        rows[name] = {"wall_s": statistics.median(r["wall_s"] for r in rs),
                      "tokens_per_s": statistics.median(r["tokens_per_s"] for r in rs),
                      "peak_rss_mib": max(r["peak_rss_mib"] for r in rs), "mode": rs[-1]["mode"],
                      "runs": rs, "warm_up": warm[name]}
    from saguaro.kernels import quant

    out = {"name": args.name, "command": shlex.join(base), "variants": {k: shlex.join(v) for k, v in variants.items()},
           "machine": cpu_model(), "flags": cpu_flags(), "kernel_path": quant.path_name(), "reps": args.reps,
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"quick-start-{args.name}"
    stem.with_suffix(".json").write_text(json.dumps(out, indent=1) + "\n")
    stem.with_suffix(".md").write_text(_markdown(out))
    print(_markdown(out))
    return 0


def _peak_child(argv: list[str], timeout_s: float) -> dict[str, Any]:
    """run_once in a fresh interpreter, so that the peak RSS it reports is this run's child alone."""
    code = (f"import json, sys; sys.path.insert(0, {str(ROOT)!r}); from bench.quick_start import run_once; "
            f"print(json.dumps(run_once({argv!r}, {timeout_s!r})))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout_s + 60)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def _markdown(out: dict[str, Any]) -> str:
    lines = [f"# The quick start as a user runs it: {out['name']}", "",
             f"- Command: `{out['command']}` (README, Quick start), each run a new process; variants add flags.",
             f"- Machine: {out['machine']}; CPU flags: {' '.join(out['flags'])}; quantized kernel path: "
             f"{out['kernel_path']}.",
             f"- {out['reps']} runs per variant after one warm-up run each, alternating; medians (peak RSS: the "
             f"largest). Date: {out['date']}.", "",
             "| variant | mode | wall s | decode tokens/s | peak RSS MiB | warm-up wall s |",
             "|---|---|---:|---:|---:|---:|"]
    for name, r in out["rows"].items():
        lines.append(f"| `{out['variants'][name]}` | {r['mode']} | {r['wall_s']:.1f} | {r['tokens_per_s']:.1f} | "
                     f"{r['peak_rss_mib']:.0f} | {r['warm_up']['wall_s']:.1f} |")
    rows = list(out["rows"].values())
    if len(rows) >= 2:
        a, b = rows[0], rows[1]
        other = list(out["variants"].values())[1]
        lines += ["", f"The default against `{other}`: {a['wall_s'] / b['wall_s']:.2f}x the wall time, "
                  f"{a['tokens_per_s'] / b['tokens_per_s']:.2f}x the decode speed, "
                  f"{a['peak_rss_mib'] / b['peak_rss_mib']:.2f}x the peak memory."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
