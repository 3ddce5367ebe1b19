"""saguaro's OpenAI-compatible server (``saguaro serve``; needs ``pip install 'saguaro[serve]'``).

``create_app(engine)`` gives a FastAPI app over an ``AsyncEngine`` (to run with any ASGI server or
to mount in an existing app); ``serve(engine, host=..., port=...)`` runs it with uvicorn and shuts
down gracefully on SIGTERM. See docs/serving.md.
"""
from __future__ import annotations

from saguaro.serve.app import create_app
from saguaro.serve.server import serve

__all__ = ["create_app", "serve"]
