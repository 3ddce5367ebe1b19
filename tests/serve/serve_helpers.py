"""Helpers for the server tests: start a real ``saguaro serve`` (SmolLM2-135M as target and as a
separate draft instance, float32 so greedy output is exact) on a free loopback port with
``saguaro.serve.launch``, scrape /metrics."""
from __future__ import annotations

import time
from typing import Optional

import pytest

from saguaro.serve.launch import LaunchedServer

MODEL = "smollm2-135m"
SERVED_NAME = "smol"
#: the server's speculation shape; the reference engine uses the same
K = 3


def need_model(name: str = MODEL) -> None:
    """Skip (with the install command) when the preset's packages are not installed."""
    from saguaro.models import presets

    preset = presets.PRESETS[name]
    if not all(presets._package_dir(m) is not None for m in preset.module_names()):
        pytest.skip(f"{name} is not installed: {preset.install_hint}")


def serve_args(*extra: str, pair: Optional[tuple[str, str]] = (MODEL, MODEL), dtype: str = "float32") -> list[str]:
    """The tests' ``saguaro serve`` options for ``saguaro.serve.launch_server`` (skips when SmolLM2 is
    asked for and not installed). ``pair``: target and draft (None: the default pair)."""
    models = ["--target", pair[0], "--draft", pair[1]] if pair is not None else []
    if pair == (MODEL, MODEL):
        need_model()
    return [*models, "--dtype", dtype, "--k", str(K), "--served-model-name", SERVED_NAME, "--log-level", "warning",
            *extra]


def scrape(server: LaunchedServer) -> dict[str, float]:
    """GET /metrics as {name{labels}: value} (samples only)."""
    import httpx

    text = httpx.get(server.url + "/metrics", timeout=60).text
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def wait_until(predicate, timeout_s: float = 60.0, step_s: float = 0.1) -> bool:
    """Poll predicate until true or the timeout (for server-side effects that follow a client action)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return predicate()
