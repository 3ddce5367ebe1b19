"""Fixtures: one real server for the module's tests, an in-process reference Engine, an openai client."""
from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'saguaro[serve]'")
pytest.importorskip("openai", reason="the test extra is not installed: pip install 'saguaro[test]'")

from saguaro.serve.launch import launch_server  # noqa: E402
from serve_helpers import K, MODEL, need_model, serve_args  # noqa: E402


@pytest.fixture(scope="session")
def server():
    with launch_server(serve_args()) as s:
        yield s


@pytest.fixture(scope="session")
def reference():
    """Engine.generate on the same pair, in this process: the expected outputs."""
    need_model()
    import torch

    import saguaro
    import saguaro.models

    pair = [saguaro.models.load(MODEL, dtype=torch.float32) for _ in range(2)]
    with saguaro.Engine(pair[0], pair[1], mode="ssd", k=K) as eng:
        yield eng


@pytest.fixture
def client(server):
    import openai

    with openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=300) as c:
        yield c


