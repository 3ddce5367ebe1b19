"""Benchmark drivers; the harness itself is saguaro.benchmark (shipped in the wheel)."""
