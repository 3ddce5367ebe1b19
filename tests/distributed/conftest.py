"""Helpers for the distributed-draft tests: a draft-server in a thread of this process (tiny models)
or as a child process (real models), bounded waits, and the autoregressive reference."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))

from tiny_adapter import TinyAdapter  # noqa: E402

from saguaro.distributed.draft_server import DraftServer  # noqa: E402
from saguaro.models.loading import LoadedModel  # noqa: E402

V = 32


def tiny_target() -> TinyAdapter:
    return TinyAdapter(V, seed=0)


def tiny_draft() -> TinyAdapter:
    return TinyAdapter(V, like=TinyAdapter(V, seed=0), noise=0.3)


class ThreadServer:
    """A DraftServer serving in a thread of this process; stopped (bounded) on exit."""

    def __init__(self, model: LoadedModel, **kwargs) -> None:
        self.server = DraftServer(model, "tcp://127.0.0.1:0", **kwargs)
        self.thread = threading.Thread(target=self.server.serve, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return self.server.address

    def close(self) -> None:
        self.server.close()
        self.thread.join(timeout=15)
        assert not self.thread.is_alive(), "the draft-server did not stop within 15 s"


@pytest.fixture
def tiny_server():
    servers: list[ThreadServer] = []

    def start(model: Optional[LoadedModel] = None, **kwargs) -> ThreadServer:
        s = ThreadServer(model or LoadedModel(adapter=tiny_draft(), tokenizer=None, name="tiny"), **kwargs)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()


def wait_until(predicate: Callable[[], bool], timeout_s: float, every_s: float = 0.05) -> bool:
    """Poll predicate() until it holds or timeout_s passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every_s)
    return bool(predicate())


class ServerProcess:
    """``saguaro draft-server`` as a child process (optionally inside a network namespace)."""

    def __init__(self, draft: str, listen: str, *, netns: Optional[str] = None, extra: tuple = (),
                 env: Optional[dict] = None, start_timeout_s: float = 300.0) -> None:
        from saguaro.distributed.draft_process import READY_PREFIX

        cmd = [sys.executable, "-m", "saguaro", "draft-server", "--draft", draft, "--listen", listen,
               "--dtype", "float32", "--threads", "1", *extra]
        if netns:
            cmd = ["ip", "netns", "exec", netns, *cmd]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, **(env or {})})
        line = _readline_within(self.proc, start_timeout_s)
        if not line.startswith(READY_PREFIX):
            self.kill()
            raise RuntimeError(f"draft-server did not start: {line!r} {self.proc.stderr.read()[-2000:]}")
        self.address = line[len(READY_PREFIX):].split()[0]
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()
        self.log: list[str] = []
        threading.Thread(target=lambda: [self.log.append(x) for x in self.proc.stderr], daemon=True).start()

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def _readline_within(proc: subprocess.Popen, timeout_s: float) -> str:
    out: list[str] = []
    t = threading.Thread(target=lambda: out.append(proc.stdout.readline()), daemon=True)
    t.start()
    t.join(timeout=timeout_s)
    return out[0].strip() if out else ""
