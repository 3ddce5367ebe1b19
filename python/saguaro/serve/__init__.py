"""saguaro's OpenAI-compatible server (``saguaro serve``; needs ``pip install 'saguaro[serve]'``).

``create_app(engine)`` gives a FastAPI app over an ``AsyncEngine`` (to run with any ASGI server or
to mount in an existing app); ``serve(engine, host=..., port=...)`` runs it with uvicorn and shuts
down gracefully on SIGTERM. ``launch_server(args)`` starts ``saguaro serve`` as a child process on a
free loopback port (tests, benchmarks). See docs/serving.md.
"""
from __future__ import annotations

from typing import Any

from saguaro.serve.launch import LaunchedServer, launch_server, start_server

__all__ = ["create_app", "serve", "launch_server", "start_server", "LaunchedServer"]


def __getattr__(name: str) -> Any:
    # the app and the server import FastAPI and uvicorn: only when asked for, so that launching a
    # server process (launch.py, standard library only) works without the serve extra in the caller
    if name == "create_app":
        from saguaro.serve.app import create_app
        return create_app
    if name == "serve":
        from saguaro.serve.server import serve
        return serve
    raise AttributeError(f"module 'saguaro.serve' has no attribute {name!r}")
