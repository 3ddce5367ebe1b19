"""``python -m bench.rescore RESULTS.json ...`` (or ``python -m saguaro.benchmark.rescore``): recompute a finished run's SSD limit and issue-#6
target verdicts from the latencies and figures it stored, and rewrite its .md and .png.

Nothing is re-measured: the run's planner latencies, acceptance and per-row medians are read back
from the JSON. Use it when the speed model's LIMIT changes, so that older results state the limit
the current model gives.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from saguaro.benchmark import planner, report
from saguaro.benchmark import speed_model as sm


def rescore(results: dict) -> dict:
    """The results with plan["ssd_limit"] and targets recomputed (in place; also returned)."""
    plan = results.get("planner")
    if not plan:
        raise ValueError("this run has no planner section (run without --no-plan): nothing to rescore")
    lat = sm.Latencies.from_json(plan["latencies"])
    ks = [n - 1 for n in sorted(lat.target_verify) if n >= 2]
    plan["ssd_limit"] = planner.ssd_limit_entry(lat, plan["acceptance"], ks)
    if "targets" in results:
        results["targets"] = planner.evaluate_targets(plan, results["summary"], results.get("methods", []))
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("results", nargs="+", type=Path, help="bench/results/<name>.json files")
    args = ap.parse_args()
    for path in args.results:
        results = rescore(json.loads(path.read_text(encoding="utf-8")))
        report.write_all(results, path.parent, path.stem)
        print(f"rescored {path}")


if __name__ == "__main__":
    main()
