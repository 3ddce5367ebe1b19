"""The server's request parsing, error bodies and metrics bookkeeping, without a model."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'saguaro[serve]'")

from saguaro.results import StreamDelta  # noqa: E402
from saguaro.serve.errors import APIError  # noqa: E402
from saguaro.serve.metrics import RequestClock, ServerMetrics, ssd_figures  # noqa: E402
from saguaro.serve.protocol import ChatCompletionRequest, CompletionRequest, parse_body  # noqa: E402


def _parse(body, model=CompletionRequest):
    return parse_body(json.dumps(body).encode(), model)


def test_completion_request_to_sampling_params():
    req = _parse({"model": "m", "prompt": ["hi"], "max_tokens": 5, "temperature": 0.5, "top_p": 0.9, "top_k": -1,
                  "stop": "\n", "seed": 3, "ignore_eos": True, "stream": True,
                  "stream_options": {"include_usage": True}, "user": "ignored", "unknown_field": 1})
    assert req.single_prompt() == "hi" and req.include_usage
    sp = req.sampling(5)
    assert (sp.max_new_tokens, sp.temperature, sp.top_p, sp.top_k, sp.stop, sp.seed, sp.ignore_eos) == (
        5, 0.5, 0.9, 0, ["\n"], 3, True)
    assert _parse({"model": "m", "prompt": [[1, 2]]}).single_prompt() == [1, 2]
    assert _parse({"model": "m", "prompt": "x"}).sampling(16).temperature == 1.0  # OpenAI's default


def test_chat_request_messages_and_max_tokens():
    req = _parse({"model": "m", "messages": [{"role": "system", "content": "be brief"},
                                             {"role": "user", "content": [{"type": "text", "text": "a"},
                                                                          {"type": "text", "text": "b"}]}],
                  "max_completion_tokens": 7}, ChatCompletionRequest)
    assert req.chat_messages() == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "ab"}]
    assert req.requested_max_tokens == 7
    with pytest.raises(APIError, match="only text content parts"):
        _parse({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
               ChatCompletionRequest).chat_messages()


@pytest.mark.parametrize("body, param, message", [
    (b"{", None, "not valid JSON"),
    (b"\xff", None, "not valid JSON"),
    (b'"text"', None, "must be a JSON object"),
    ({"prompt": "a"}, "model", "Field required"),
    ({"model": "m", "prompt": "a", "temperature": 3}, "temperature", "less than or equal to 2"),
    ({"model": "m", "prompt": "a", "seed": -1}, "seed", "greater than or equal to 0"),
    ({"model": "m", "prompt": "a", "presence_penalty": 0.5}, "presence_penalty", "not supported"),
    ({"model": "m", "prompt": "a", "logit_bias": {"1": 2}}, "logit_bias", "not supported"),
    ({"model": "m", "prompt": "a", "echo": True}, "echo", "echo is not supported"),
    ({"model": "m", "prompt": "a", "best_of": 2}, "best_of", "best_of must be 1"),
    ({"model": "m", "prompt": 5}, "prompt", "invalid value for prompt"),
])
def test_bad_bodies_name_the_parameter(body, param, message):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(APIError) as e:
        parse_body(raw, CompletionRequest)
    assert e.value.status == 400 and e.value.param == param and message in e.value.message
    assert set(e.value.body()["error"]) == {"message", "type", "param", "code"}


def test_ssd_figures_and_metrics_counters_agree():
    per_request = {"generated_tokens": 9, "rounds": 3, "proposed_per_position": [3, 3, 2],
                   "accepted_per_position": [3, 2, 1], "lookups_per_position": [2, 2, 0],
                   "hits_per_position": [1, 1, 0], "backups_jit": 1, "backups_fast": 1, "time_to_first_token_s": 0.1}
    f = ssd_figures(per_request, "ssd")
    assert (f["proposed_tokens"], f["accepted_tokens"], f["cache_lookups"], f["cache_hits"]) == (8, 6, 4, 2)
    assert f["acceptance_rate"] == 0.75 and f["cache_hit_rate"] == 0.5 and f["tokens_per_round"] == 3.0
    assert ssd_figures({"generated_tokens": 4, "rounds": 4}, "ar")["acceptance_rate"] is None
    m = ServerMetrics(lambda: {"batched_rounds": 10, "round_rows": 25, "draft_hidden_fraction": 0.5})
    m.finished(f, 5, "length")
    m.finished(f, 5, "stop")
    text = m.exposition().decode()
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert float(samples["saguaro_draft_accepted_tokens_total"]) == 12
    assert float(samples['saguaro_draft_accepted_tokens_by_position_total{position="0"}']) == 6
    assert float(samples['saguaro_backups_total{kind="fast"}']) == 2
    assert float(samples["saguaro_generation_tokens_total"]) == 18
    assert float(samples['saguaro_requests_total{finish_reason="stop"}']) == 1
    assert float(samples["saguaro_runtime_round_rows_total"]) == 25
    assert float(samples["saguaro_draft_hidden_fraction"]) == 0.5
    assert all(name.startswith("saguaro_") for name in samples)


def test_request_clock_counts_first_token_then_gaps_per_token():
    m = ServerMetrics()
    clock = RequestClock(m)
    clock.tokens(StreamDelta("a", [1, 2]))   # TTFT; the round's second token has no gap of its own
    clock.tokens(StreamDelta("", []))        # no tokens: nothing
    clock.tokens(StreamDelta("b", [3, 4, 5]))
    clock.done()
    samples = dict(line.rsplit(" ", 1) for line in m.exposition().decode().splitlines()
                   if line and not line.startswith("#"))
    assert float(samples["saguaro_time_to_first_token_seconds_count"]) == 1
    assert float(samples["saguaro_inter_token_latency_seconds_count"]) == 3
    assert float(samples["saguaro_request_latency_seconds_count"]) == 1


def test_serve_command_rejects_a_bad_batch_before_loading_models(capsys):
    from saguaro.cli import main

    assert main(["serve", "--target", "smollm2-135m", "--draft", "smollm2-135m", "--max-batch", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --max-batch must be >= 1, got 0"


def test_create_app_checks_its_limits():
    from saguaro.serve.app import create_app

    with pytest.raises(ValueError, match="max_batch must be an integer >= 1"):
        create_app(object(), max_batch=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_body_bytes must be an integer >= 1024"):
        create_app(object(), max_body_bytes=10)  # type: ignore[arg-type]


def test_process_memory_gauges_follow_an_allocation():
    import ctypes
    import sys

    def sample(name: str):
        for line in ServerMetrics().exposition().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    rss = sample("saguaro_process_resident_memory_bytes")
    if rss is None or not sys.platform.startswith("linux"):
        pytest.skip("process memory gauges need Linux /proc")
    assert rss > 0
    heap = sample("saguaro_process_heap_in_use_bytes")
    if heap is None:
        pytest.skip("no glibc mallinfo2 here")
    # 64 MiB from malloc (through ctypes), held: the heap in use rises by it, then falls back when freed
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    block = libc.malloc(64 * 2**20)
    try:
        held = sample("saguaro_process_heap_in_use_bytes")
    finally:
        libc.free(block)
    assert held - heap >= 63 * 2**20
    assert sample("saguaro_process_heap_in_use_bytes") - heap < 32 * 2**20
