"""llama.cpp's server (``llama-server``) as the serving peer of ``saguaro serve``'s load benchmark.

Built from the same vendored source as the benchmark's llama.cpp tools (``llamacpp_peer.build``), run on
the same GGUF files with continuous batching over ``parallel`` slots, either plainly or with its
speculative decoding and the same draft (``--spec-draft-n-max``). Never a runtime dependency.
``launch_llama_server`` is a context manager like ``saguaro.serve.launch_server``: a free loopback port,
a bounded wait for ``GET /health``, SIGTERM then SIGKILL on leaving.
"""
from __future__ import annotations

import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from saguaro.benchmark.llamacpp_peer import build
from saguaro.serve.launch import LaunchedServer, follow_log, health_ok

SERVER = "llama-server"
#: context tokens per slot: the load benchmark's prompts are short and its outputs at most a few hundred
_SLOT_CONTEXT = 1024


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_command(binary: Path, target_gguf: Path, draft_gguf: Optional[Path], *, port: int, threads: int,
                   parallel: int, draft_max: int = 4) -> list[str]:
    """The llama-server command line: all layers on the CPU, ``threads`` threads (draft too), one slot per
    concurrent client, no web UI."""
    cmd = [str(binary), "-m", str(target_gguf), "--host", "127.0.0.1", "--port", str(port), "-t", str(threads),
           "-tb", str(threads), "-np", str(parallel), "-c", str(parallel * _SLOT_CONTEXT), "-ngl", "0", "--no-webui"]
    if draft_gguf is not None:
        cmd += ["-md", str(draft_gguf), "-td", str(threads), "-ngld", "0", "--spec-type", "draft-simple",
                "--spec-draft-n-max", str(draft_max), "--spec-draft-n-min", "0"]
    return cmd


@contextmanager
def launch_llama_server(target_gguf: Path, draft_gguf: Optional[Path] = None, *, threads: int, parallel: int,
                        draft_max: int = 4, startup_timeout: float = 600.0,
                        stop_timeout: float = 30.0) -> Iterator[LaunchedServer]:
    """A healthy llama-server on a free loopback port (built first if needed; about 10 minutes once);
    RuntimeError with its last log lines when it exits or is not healthy within ``startup_timeout``."""
    binary = build(targets=(SERVER,))[SERVER]
    cmd = server_command(binary, target_gguf, draft_gguf, port=_free_port(), threads=threads, parallel=parallel,
                         draft_max=draft_max)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    server = LaunchedServer(proc, int(cmd[cmd.index("--port") + 1]), [])

    follow_log(proc, server.log, "llama-server-log")
    deadline = time.monotonic() + startup_timeout
    try:
        while not health_ok(server.url, timeout=5.0):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"llama-server {'exited' if proc.poll() is not None else 'was not healthy'}: "
                                   f"{' '.join(cmd)}\n{server.log_tail()}")
            time.sleep(0.2)
        yield server
    finally:
        server.stop(stop_timeout)
