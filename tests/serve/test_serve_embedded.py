"""AsyncEngine embedded in an app of one's own, as docs/serving.md shows: custom routes awaiting
generate() and streaming deltas, and the OpenAI routes mounted beside them over the same engine."""
from __future__ import annotations

from contextlib import asynccontextmanager

import pytest

import saguaro
from saguaro import SamplingParams
from serve_helpers import K

pytestmark = pytest.mark.slow


def test_async_engine_in_a_fastapi_app(reference):
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse
    from fastapi.testclient import TestClient

    from saguaro.serve import create_app

    engine = saguaro.AsyncEngine(reference.target, reference.draft, mode="ssd", k=K)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        engine.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/complete")
    async def complete(prompt: str) -> dict:
        [out] = await engine.generate(prompt, SamplingParams(max_new_tokens=12))
        return {"text": out.text, "tokens_per_round": out.metrics.get("tokens_per_round")}

    @app.post("/stream")
    async def stream(prompt: str) -> StreamingResponse:
        async def text():
            async with engine.stream(prompt, SamplingParams(max_new_tokens=12)) as s:
                async for delta in s:
                    yield delta.text
        return StreamingResponse(text(), media_type="text/plain")

    app.mount("/openai", create_app(engine, served_model_name="smol"))
    [want] = reference.generate("def add(a, b):", SamplingParams(max_new_tokens=12))
    with TestClient(app) as client:
        r = client.post("/complete", params={"prompt": "def add(a, b):"})
        assert r.status_code == 200 and r.json()["text"] == want.text and r.json()["tokens_per_round"] > 1
        r = client.post("/stream", params={"prompt": "def add(a, b):"})
        assert r.status_code == 200 and r.text == want.text
        r = client.post("/openai/v1/completions", json={"model": "smol", "prompt": "def add(a, b):",
                                                         "max_tokens": 12, "temperature": 0})
        assert r.status_code == 200 and r.json()["choices"][0]["text"] == want.text
    assert engine.closed
