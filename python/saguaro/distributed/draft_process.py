"""DraftProcess: a ``saguaro draft-server`` that the engine starts itself (``Engine(draft_process=True)``).

The child listens on a free loopback port, prints its address as its first line, and is stopped
(SIGTERM, then SIGKILL after a bounded wait) when the engine closes.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from typing import Optional, Sequence

#: the child's first stdout line starts with this, then the address
READY_PREFIX = "saguaro draft-server listening on "


class DraftProcess:
    """Start ``saguaro draft-server`` for ``draft`` (a preset name or a path) on 127.0.0.1."""

    def __init__(self, draft: str, *, threads: Optional[int] = None, cores: Optional[Sequence[int]] = None,
                 dtype: str = "bfloat16", quantized: Optional[bool] = None, int8: Optional[str] = None,
                 start_timeout_s: float = 600.0, extra_args: Sequence[str] = ()) -> None:
        if not isinstance(draft, (str, os.PathLike)):
            raise ValueError(f"draft_process=True starts `saguaro draft-server --draft ...`, which loads the draft by "
                             f"name: pass a preset name or a path, not a {type(draft).__name__}")
        cmd = [sys.executable, "-m", "saguaro", "draft-server", "--draft", str(draft), "--listen", "tcp://127.0.0.1:0",
               "--dtype", dtype]
        if threads:
            cmd += ["--threads", str(int(threads))]
        if cores:
            cmd += ["--cores", ",".join(str(int(c)) for c in cores)]
        if quantized is not None:  # None: the server's default (saguaro.models.runs_quantized)
            cmd.append("--quantized" if quantized else "--no-quantized")
        if int8:
            cmd += ["--draft-int8", str(int8)]
        cmd += list(extra_args)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.address = self._await_address(start_timeout_s)
        # keep draining its output so that a chatty child never blocks on a full pipe
        self._drain = [threading.Thread(target=_drain, args=(s,), daemon=True) for s in (self.proc.stdout, self.proc.stderr)]
        for t in self._drain:
            t.start()

    def _await_address(self, timeout_s: float) -> str:
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout=timeout_s)
        line = result[0].strip() if result else ""
        if not line.startswith(READY_PREFIX):
            self.stop()
            err = self.proc.stderr.read() if self.proc.stderr else ""
            tail = "\n".join(err.strip().splitlines()[-5:])
            raise RuntimeError(f"the draft process did not start within {timeout_s:g} s (first line {line!r}); "
                               f"its last error lines:\n{tail}")
        return line[len(READY_PREFIX):].split()[0]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, wait up to timeout_s, then SIGKILL."""
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=timeout_s)


def _drain(stream) -> None:
    try:
        for _ in stream:
            pass
    except Exception:  # noqa: BLE001 - the child is gone
        pass

