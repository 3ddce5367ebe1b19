"""Start ``saguaro serve`` as a child process on a free loopback port, for tests, benchmarks and scripts.

``launch_server(args)`` is a context manager: it starts ``python -m saguaro serve ARGS --host
127.0.0.1 --port 0`` (the server binds a free port and names it in its ready line), waits (bounded)
until ``GET /health`` answers 200, yields a ``LaunchedServer`` and on leaving stops it with SIGTERM,
waiting a bounded time before killing it. Needs only the standard library on the caller's side.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, Optional, Sequence

#: the line ``saguaro serve`` prints once it listens (server.py's ready callback, via the CLI)
_READY = re.compile(r"saguaro: serving .* on http://127\.0\.0\.1:(\d+)/v1")
#: seconds to wait for the ready line and then /health (model loading, first conversion excluded)
DEFAULT_STARTUP_TIMEOUT_S = 300.0
#: seconds a SIGTERM'd server gets to finish in-flight requests and exit before it is killed
DEFAULT_STOP_TIMEOUT_S = 90.0


@dataclass
class LaunchedServer:
    """A ``saguaro serve`` child process and where it listens. ``log`` collects its stderr lines."""

    proc: subprocess.Popen
    port: int
    log: list = field(default_factory=list)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (the OpenAI base URL is this plus ``/v1``)."""
        return f"http://127.0.0.1:{self.port}"

    def rss_kib(self) -> int:
        """Resident memory of the server process (KiB), from /proc (Linux)."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS line")

    def log_tail(self, lines: int = 30) -> str:
        """The last lines the server wrote to stderr (for error messages)."""
        return "".join(self.log[-lines:])

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT_S) -> Optional[int]:
        """SIGTERM and wait up to ``timeout`` seconds; the exit status, or None if it had to be killed."""
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)
            return None


def follow_log(proc: subprocess.Popen, log: list, name: str, on_line: Optional[Callable[[str], None]] = None,
               on_end: Optional[Callable[[], None]] = None) -> None:
    """Drain ``proc``'s stderr into ``log`` on a daemon thread for the process's whole life (so it never
    blocks on a full pipe), calling ``on_line`` with each line and ``on_end`` once it closes."""
    def pump() -> None:
        for line in proc.stderr:  # type: ignore[union-attr]
            log.append(line)
            if on_line is not None:
                on_line(line)
        if on_end is not None:
            on_end()

    threading.Thread(target=pump, daemon=True, name=name).start()


def health_ok(url: str, timeout: float) -> bool:
    """Whether ``GET URL/health`` answers 200 with status "ok" within ``timeout`` seconds."""
    try:
        with urllib.request.urlopen(url + "/health", timeout=timeout) as r:
            return r.status == 200 and json.loads(r.read() or b"{}").get("status") == "ok"
    except (urllib.error.URLError, OSError, ValueError):
        return False


def start_server(args: Sequence[str] = (), *, startup_timeout: float = DEFAULT_STARTUP_TIMEOUT_S,
                 env: Optional[Mapping[str, str]] = None, python: str = sys.executable) -> LaunchedServer:
    """Start ``saguaro serve ARGS`` on a free loopback port and return once /health answers 200.

    ``args``: more ``saguaro serve`` options (not ``--host``/``--port``). Raises RuntimeError, with the
    server's last log lines, when it exits or is not healthy within ``startup_timeout`` seconds (then
    it is killed). The caller stops it (``stop()``); ``launch_server`` does that itself.
    """
    for a in args:
        if a in ("--host", "--port") or a.startswith(("--host=", "--port=")):
            raise ValueError(f"launch_server chooses the host and port itself; drop {a!r} from args")
    cmd = [python, "-m", "saguaro", "serve", *args, "--host", "127.0.0.1", "--port", "0"]
    child_env = dict(os.environ if env is None else env, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=child_env)
    log: list[str] = []
    port: list[int] = []
    announced = threading.Event()

    def ready(line: str) -> None:
        m = _READY.search(line)
        if m and not port:
            port.append(int(m.group(1)))
            announced.set()

    follow_log(proc, log, "saguaro-serve-log", on_line=ready, on_end=announced.set)  # end: the process ended
    deadline = time.monotonic() + startup_timeout
    server: Optional[LaunchedServer] = None
    if announced.wait(startup_timeout) and port:
        server = LaunchedServer(proc, port[0], log)
        while proc.poll() is None and time.monotonic() < deadline:
            if health_ok(server.url, timeout=max(0.1, min(5.0, deadline - time.monotonic()))):
                return server
            time.sleep(0.1)
    code = proc.poll()
    if code is None:
        proc.kill()
        proc.wait(30)
        why = f"was not healthy within {startup_timeout:g} s"
    else:
        why = f"exited with status {code}"
    raise RuntimeError(f"saguaro serve {why}: {' '.join(cmd)}\n" + "".join(log[-30:]))


@contextmanager
def launch_server(args: Sequence[str] = (), *, startup_timeout: float = DEFAULT_STARTUP_TIMEOUT_S,
                  stop_timeout: float = DEFAULT_STOP_TIMEOUT_S, env: Optional[Mapping[str, str]] = None,
                  python: str = sys.executable) -> Iterator[LaunchedServer]:
    """``with launch_server(["--target", "smollm2-135m", ...]) as server:`` a healthy ``saguaro serve``
    on a free loopback port (``server.url``); on leaving it gets SIGTERM, ``stop_timeout`` seconds to
    exit, and is killed after that. See ``start_server`` for the start-up."""
    server = start_server(args, startup_timeout=startup_timeout, env=env, python=python)
    try:
        yield server
    finally:
        server.stop(stop_timeout)
