"""Helpers for the server tests: start a real ``saguaro serve`` (SmolLM2-135M as target and as a
separate draft instance, float32 so greedy output is exact) on a free loopback port, scrape /metrics."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Optional

import pytest

MODEL = "smollm2-135m"
SERVED_NAME = "smol"
#: the server's speculation shape; the reference engine uses the same
K = 3
_READY = re.compile(r"saguaro: serving .* on http://127\.0\.0\.1:(\d+)/v1")


def need_model(name: str = MODEL) -> None:
    """Skip (with the install command) when the preset's packages are not installed."""
    from saguaro.models import presets

    preset = presets.PRESETS[name]
    if not all(presets._package_dir(m) is not None for m in preset.module_names()):
        pytest.skip(f"{name} is not installed: {preset.install_hint}")


@dataclass
class Server:
    """A running server process and where it listens."""

    proc: subprocess.Popen
    port: int
    log: list = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss_kib(self) -> int:
        """Resident memory of the server process (KiB), from /proc."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS line")

    def stop(self, timeout: float = 90.0) -> Optional[int]:
        """SIGTERM and wait; the exit status (None if it had to be killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
                return None
        return self.proc.returncode


def start_server(*extra: str, startup_s: float = 300.0, pair: Optional[tuple[str, str]] = (MODEL, MODEL),
                 dtype: str = "float32") -> Server:
    """Start ``python -m saguaro serve`` on port 0 and wait for its ready line (bounded).

    ``pair``: target and draft (None: the default pair); SmolLM2 twice unless told."""
    models = ["--target", pair[0], "--draft", pair[1]] if pair is not None else []
    if pair == (MODEL, MODEL):
        need_model()
    cmd = [sys.executable, "-m", "saguaro", "serve", *models, "--dtype", dtype,
           "--k", str(K), "--port", "0", "--served-model-name", SERVED_NAME, "--log-level", "warning", *extra]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    log: list[str] = []
    port: list[int] = []
    ready = threading.Event()

    def pump() -> None:
        for line in proc.stderr:  # type: ignore[union-attr]
            log.append(line)
            m = _READY.search(line)
            if m and not port:
                port.append(int(m.group(1)))
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    ready.wait(startup_s)
    if not port:
        proc.kill()
        raise RuntimeError("the server did not start:\n" + "".join(log[-30:]))
    return Server(proc, port[0], log)


def scrape(server: Server) -> dict[str, float]:
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
