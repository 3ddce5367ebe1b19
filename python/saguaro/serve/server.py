"""``saguaro serve``: build the AsyncEngine, serve it with uvicorn, shut down gracefully.

On SIGTERM (or Ctrl-C) the server stops admitting (new connections are refused, new requests on
open ones get 503), lets in-flight requests finish for up to ``shutdown_timeout`` seconds, cancels
what is left, closes the engine and returns normally (exit status 0).
"""
from __future__ import annotations

import logging
from typing import Any, Optional

import uvicorn

from saguaro.async_engine import AsyncEngine
from saguaro.serve.app import DEFAULT_MAX_BATCH, DEFAULT_MAX_BODY_BYTES, create_app

#: seconds in-flight requests get to finish after SIGTERM before they are cancelled
DEFAULT_SHUTDOWN_TIMEOUT_S = 30.0

log = logging.getLogger("saguaro.serve")


class _GracefulServer(uvicorn.Server):
    """uvicorn's server, telling the app to stop admitting as soon as the signal arrives."""

    def __init__(self, config: uvicorn.Config, served: Any) -> None:
        super().__init__(config)
        self._served = served

    def handle_exit(self, sig: int, frame: Any) -> None:
        self._served.draining = True
        super().handle_exit(sig, frame)
        # uvicorn re-raises the signal after its shutdown (the process then dies of it); a graceful
        # shutdown is the expected end of a server here, so it exits 0 instead
        captured = getattr(self, "_captured_signals", None)
        if isinstance(captured, list):
            captured.clear()


def serve(engine: AsyncEngine, *, host: str = "127.0.0.1", port: int = 8000, served_model_name: Optional[str] = None,
          max_batch: int = DEFAULT_MAX_BATCH, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
          shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT_S, log_level: str = "info",
          ready: Optional[Any] = None) -> None:
    """Serve ``engine`` until SIGTERM/SIGINT; closes it on the way out. ``ready(port)`` is called
    once the socket listens (with the bound port, useful with port 0)."""
    app = create_app(engine, served_model_name=served_model_name, max_batch=max_batch,
                     max_body_bytes=max_body_bytes, close_engine=True)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                            timeout_graceful_shutdown=max(1, int(round(shutdown_timeout))), lifespan="on")
    server = _GracefulServer(config, app.state.served)
    if ready is not None:
        original_startup = server.startup

        async def startup(sockets: Any = None) -> None:
            await original_startup(sockets=sockets)
            bound = [s.getsockname()[1] for srv in server.servers for s in srv.sockets]
            ready(bound[0] if bound else port)

        server.startup = startup  # type: ignore[method-assign]
    try:
        server.run()
    finally:
        engine.close()
