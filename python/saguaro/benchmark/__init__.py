"""saguaro's benchmark: same-run, alternating, pinned comparison of AR, SD, SSD and the transformers peers.

``python -m bench.run`` and ``saguaro bench`` call :func:`saguaro.benchmark.cli.main`.
"""
from __future__ import annotations

__all__ = ["cli", "harness", "methods", "planner", "prompts", "report", "speed_model", "stats"]
