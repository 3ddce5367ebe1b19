"""The server on the default pair (Qwen2.5-Coder 1.5B target, 0.5B draft, bf16): the openai client's
greedy completion and chat equal Engine.generate on the same pair, token for token."""
from __future__ import annotations

import pytest

from saguaro import SamplingParams
from saguaro.serve.launch import launch_server
from serve_helpers import K, SERVED_NAME, need_model, serve_args

pytestmark = pytest.mark.slow


def test_default_pair_greedy_equals_engine_generate():
    import openai
    import torch

    import saguaro
    from saguaro.models import default_pair

    target, draft = default_pair()
    need_model(target)
    need_model(draft)
    prompt, chat = "def quicksort(arr):", [{"role": "user", "content": "Write a Python one-liner to sum a list."}]
    with saguaro.Engine(target, draft, mode="ssd", k=K, dtype=torch.bfloat16) as engine:
        [want] = engine.generate(prompt, SamplingParams(max_new_tokens=16))
        [want_chat] = engine.generate([chat], SamplingParams(max_new_tokens=16))
    with launch_server(serve_args(pair=None, dtype="bfloat16"), startup_timeout=900) as srv:
        with openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0, timeout=600) as client:
            got = client.completions.create(model=SERVED_NAME, prompt=prompt, max_tokens=16, temperature=0,
                                            extra_body={"return_token_ids": True})
            assert got.choices[0].token_ids == want.token_ids and got.choices[0].text == want.text
            chunks = list(client.chat.completions.create(model=SERVED_NAME, messages=chat, max_tokens=16,
                                                         temperature=0, stream=True,
                                                         extra_body={"return_token_ids": True}))
            assert sum((c.choices[0].model_extra["token_ids"] for c in chunks), []) == want_chat.token_ids
            assert "".join(c.choices[0].delta.content or "" for c in chunks) == want_chat.text
        assert srv.stop() == 0
