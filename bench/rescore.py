"""``python -m bench.rescore RESULTS.json ...``: recompute a run's LIMIT and target verdicts (see
saguaro.benchmark.rescore)."""
from __future__ import annotations

from saguaro.benchmark.rescore import main

if __name__ == "__main__":
    main()
