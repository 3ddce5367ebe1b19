"""``saguaro bench ...``: the benchmark harness (saguaro.benchmark) behind the CLI."""
from __future__ import annotations

from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``saguaro bench`` with these arguments (see ``saguaro bench --help``)."""
    from saguaro.benchmark.cli import main as bench_main

    return bench_main(argv)
