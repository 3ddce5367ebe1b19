"""Bad requests get OpenAI-shaped errors with the right status and a message saying what is wrong;
the server keeps serving."""
from __future__ import annotations

import json

import pytest

from serve_helpers import SERVED_NAME

pytestmark = pytest.mark.slow

OK = {"model": SERVED_NAME, "prompt": "Hello", "max_tokens": 2, "temperature": 0}


def _post(server, path: str, body, headers=None):
    import httpx

    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post(server.url + path, content=content, timeout=120,
                      headers={"content-type": "application/json", **(headers or {})})


@pytest.mark.parametrize("path, body, status, param, message", [
    ("/v1/completions", b"{not json", 400, None, "not valid JSON"),
    ("/v1/completions", b"[1, 2]", 400, None, "must be a JSON object"),
    ("/v1/completions", {"prompt": "a"}, 400, "model", "model"),
    ("/v1/completions", {**OK, "model": "gpt-4"}, 404, "model", "`gpt-4` does not exist"),
    ("/v1/completions", {**OK, "temperature": -1}, 400, "temperature", "greater than or equal to 0"),
    ("/v1/completions", {**OK, "top_p": 0}, 400, "top_p", "greater than 0"),
    ("/v1/completions", {**OK, "max_tokens": 0}, 400, "max_tokens", "greater than or equal to 1"),
    ("/v1/completions", {**OK, "n": 2}, 400, "n", "n must be 1"),
    ("/v1/completions", {**OK, "stop": [""]}, 400, "stop", "must not be empty"),
    ("/v1/completions", {**OK, "prompt": ""}, 400, "prompt", "prompt is empty"),
    ("/v1/completions", {**OK, "prompt": ["a", "b"]}, 400, "prompt", "one prompt per request"),
    ("/v1/completions", {**OK, "logprobs": 3}, 400, "logprobs", "logprobs are not supported"),
    ("/v1/completions", {**OK, "prompt": [1, 2, 10 ** 9]}, 400, "prompt", "outside the vocabulary"),
    ("/v1/chat/completions", {"model": SERVED_NAME, "messages": []}, 400, "messages", "messages is empty"),
    ("/v1/chat/completions", {"model": SERVED_NAME, "messages": "hi"}, 400, "messages", "valid list"),
])
def test_bad_request(server, path, body, status, param, message):
    r = _post(server, path, body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and message in err["message"]
    assert err["param"] == param and err["type"] == "invalid_request_error"


def test_prompt_longer_than_the_context_says_both_lengths(server):
    import httpx

    ctx = httpx.get(server.url + "/v1/models", timeout=30).json()["data"][0]["max_model_len"]
    r = _post(server, "/v1/completions", {**OK, "prompt": [1] * (ctx + 10)})
    assert r.status_code == 400
    err = r.json()["error"]
    assert f"maximum context length is {ctx} tokens" in err["message"] and f"{ctx + 10} tokens" in err["message"]
    assert err["code"] == "context_length_exceeded"
    r = _post(server, "/v1/completions", {**OK, "prompt": [1] * 10, "max_tokens": ctx})
    assert r.status_code == 400 and f"max_tokens is {ctx}" in r.json()["error"]["message"]


def test_oversized_body_is_413(server):
    r = _post(server, "/v1/completions", json.dumps({**OK, "prompt": "x" * (5 * 1024 * 1024)}))
    assert r.status_code == 413
    assert "over this server's limit" in r.json()["error"]["message"]


def test_unknown_path_and_method(server):
    import httpx

    r = httpx.get(server.url + "/v1/nothing", timeout=30)
    assert r.status_code == 404 and "error" in r.json()
    r = httpx.get(server.url + "/v1/completions", timeout=30)
    assert r.status_code == 405 and "error" in r.json()


def test_still_serving_after_bad_requests(server, client):
    for body in (b"{", {**OK, "model": "nope"}, {**OK, "n": 3}):
        _post(server, "/v1/completions", body)
    got = client.completions.create(model=SERVED_NAME, prompt="Hello", max_tokens=3, temperature=0)
    assert got.usage.completion_tokens == 3
