"""The server through the official openai client: completions and chat, streaming and not, equal
to Engine.generate (greedy, token for token), models/health, the per-request SSD figures."""
from __future__ import annotations

import pytest

from saguaro import SamplingParams

from serve_helpers import SERVED_NAME

pytestmark = pytest.mark.slow

PROMPT = "def fibonacci(n):"
CHAT = [{"role": "user", "content": "Name three colours."}]


def test_completion_equals_engine_generate(client, reference):
    [want] = reference.generate(PROMPT, SamplingParams(max_new_tokens=20))
    got = client.completions.create(model=SERVED_NAME, prompt=PROMPT, max_tokens=20, temperature=0,
                                    extra_body={"return_token_ids": True})
    choice = got.choices[0]
    assert choice.token_ids == want.token_ids and choice.text == want.text
    assert choice.finish_reason == "length"
    assert got.usage.prompt_tokens == len(want.prompt_token_ids) and got.usage.completion_tokens == 20
    figures = got.model_extra["saguaro"]
    assert figures["mode"] == "ssd" and figures["generated_tokens"] == 20
    assert figures["accepted_tokens"] <= figures["proposed_tokens"] and figures["rounds"] >= 1
    # an identical draft: every proposal accepted
    assert figures["acceptance_rate"] == 1.0 and figures["tokens_per_round"] > 1


def test_streamed_completion_equals_engine_generate(client, reference):
    [want] = reference.generate(PROMPT, SamplingParams(max_new_tokens=20))
    chunks = list(client.completions.create(model=SERVED_NAME, prompt=PROMPT, max_tokens=20, temperature=0,
                                            stream=True, stream_options={"include_usage": True},
                                            extra_body={"return_token_ids": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    ids = sum((c.choices[0].token_ids for c in chunks if c.choices), [])
    assert text == want.text and ids == want.token_ids
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason == "length"
    assert finals[0].model_extra["saguaro"]["generated_tokens"] == 20
    assert chunks[-1].usage.completion_tokens == 20 and not chunks[-1].choices


def test_chat_equals_engine_generate_with_the_template(client, reference):
    [want] = reference.generate([CHAT], SamplingParams(max_new_tokens=24))
    got = client.chat.completions.create(model=SERVED_NAME, messages=CHAT, max_tokens=24, temperature=0,
                                         extra_body={"return_token_ids": True})
    assert got.choices[0].message.content == want.text and got.choices[0].message.role == "assistant"
    assert got.choices[0].model_extra["token_ids"] == want.token_ids
    assert got.usage.prompt_tokens == len(want.prompt_token_ids)
    assert got.choices[0].finish_reason == want.finish_reason
    stream = client.chat.completions.create(model=SERVED_NAME, messages=CHAT, max_tokens=24, temperature=0,
                                            stream=True)
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == want.text
    assert chunks[-1].choices[0].finish_reason == want.finish_reason


def test_stop_strings_seed_top_k_and_ignore_eos(client, reference):
    [full] = reference.generate(PROMPT, SamplingParams(max_new_tokens=20))
    stop = full.text[8:11]
    [want] = reference.generate(PROMPT, SamplingParams(max_new_tokens=20, stop=[stop]))
    got = client.completions.create(model=SERVED_NAME, prompt=PROMPT, max_tokens=20, temperature=0, stop=stop)
    assert got.choices[0].text == want.text == full.text[: full.text.find(stop)]
    assert got.choices[0].finish_reason == "stop"
    # a seed fixes a sampled completion; top_k=1 is greedy whatever the temperature
    a, b = (client.completions.create(model=SERVED_NAME, prompt=PROMPT, max_tokens=8, temperature=0.9, seed=5,
                                      top_p=0.9) for _ in range(2))
    assert a.choices[0].text == b.choices[0].text
    k1 = client.completions.create(model=SERVED_NAME, prompt=PROMPT, max_tokens=20, temperature=0.8,
                                   extra_body={"top_k": 1})
    assert k1.choices[0].text == full.text
    eos = client.chat.completions.create(model=SERVED_NAME, messages=CHAT, max_tokens=200, temperature=0)
    assert eos.choices[0].finish_reason == "stop"
    n = eos.usage.completion_tokens + 3
    more = client.chat.completions.create(model=SERVED_NAME, messages=CHAT, max_tokens=n, temperature=0,
                                          extra_body={"ignore_eos": True})
    assert more.usage.completion_tokens == n and more.choices[0].finish_reason == "length"


def test_models_and_health(client, server):
    import httpx

    [m] = client.models.list().data
    assert m.id == SERVED_NAME and m.owned_by == "saguaro"
    r = httpx.get(server.url + "/health", timeout=30)
    assert r.status_code == 200 and r.json() == {"status": "ok"}
