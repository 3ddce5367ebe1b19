"""The server under concurrent load: 32 streaming clients at once equal their outputs alone and share
the runtime's batch; a client leaving mid-stream cancels its request; SIGTERM during load finishes
in-flight requests and exits 0."""
from __future__ import annotations

import asyncio
import json
import signal
import time

import pytest

from saguaro import SamplingParams
from saguaro.serve.launch import launch_server
from serve_helpers import SERVED_NAME, scrape, serve_args, wait_until

pytestmark = pytest.mark.slow

PROMPTS = ["def add(a, b):", "import os\n", "class Stack:", "# sort a list\n", "The capital of France is",
           "for i in range(10):", "SELECT * FROM", "Once upon a time"]


def _jobs(n: int) -> list[tuple[str, int, list[str]]]:
    """(prompt, max_tokens, stop strings): different lengths, some with stop strings."""
    jobs = []
    for i in range(n):
        stops = [["\n"], [" the", ")"], []][i % 3]
        jobs.append((PROMPTS[i % len(PROMPTS)], 6 + (i * 7) % 23, stops))
    return jobs


async def _stream_one(client, prompt: str, max_tokens: int, stop: list[str]) -> tuple[str, str]:
    stream = await client.completions.create(model=SERVED_NAME, prompt=prompt, max_tokens=max_tokens,
                                             temperature=0, stop=stop or None, stream=True)
    text, reason = [], None
    async for chunk in stream:
        if chunk.choices:
            text.append(chunk.choices[0].text)
            reason = chunk.choices[0].finish_reason or reason
    return "".join(text), reason


def test_32_concurrent_streams_equal_their_outputs_alone_and_batch(server, reference):
    import openai

    jobs = _jobs(32)
    # alone: one request at a time on the reference engine
    expected = [reference.generate(p, SamplingParams(max_new_tokens=n, stop=s))[0] for p, n, s in jobs]
    before = scrape(server)

    async def run_all():
        async with openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0,
                                      timeout=600) as client:
            return await asyncio.gather(*(_stream_one(client, *job) for job in jobs))

    results = asyncio.run(run_all())
    after = scrape(server)
    for (text, reason), want, job in zip(results, expected, jobs):
        assert (text, reason) == (want.text, want.finish_reason), job
    rounds = after["saguaro_runtime_rounds_total"] - before["saguaro_runtime_rounds_total"]
    rows = after["saguaro_runtime_round_rows_total"] - before["saguaro_runtime_round_rows_total"]
    assert rounds > 0 and rows / rounds > 1.0, "the runtime batched the concurrent requests"
    assert after["saguaro_requests_running"] == 0 and after["saguaro_requests_waiting"] == 0


def test_client_disconnect_mid_stream_cancels_its_request(server, client):
    import httpx

    before = scrape(server)
    body = {"model": SERVED_NAME, "prompt": "Once upon a time", "max_tokens": 3000, "temperature": 0,
            "ignore_eos": True, "stream": True}
    with httpx.Client(timeout=120) as http:
        with http.stream("POST", server.url + "/v1/completions", json=body) as r:
            assert r.status_code == 200
            events = 0
            for line in r.iter_lines():
                if line.startswith("data: "):
                    events += 1
                if events >= 3:
                    break  # leave mid-stream: the connection closes here
    assert wait_until(lambda: scrape(server)["saguaro_requests_running"] == 0, 60)
    key = 'saguaro_requests_total{finish_reason="abandoned"}'
    assert scrape(server).get(key, 0) == before.get(key, 0) + 1
    # the runtime stopped generating for it (the round in flight when it was cancelled may still end):
    # the round count settles, far below the ~750 rounds its 3000 tokens would take
    def settled() -> bool:
        rounds = scrape(server)["saguaro_runtime_rounds_total"]
        time.sleep(0.5)
        return scrape(server)["saguaro_runtime_rounds_total"] == rounds

    assert wait_until(settled, 60)
    assert scrape(server)["saguaro_runtime_rounds_total"] - before["saguaro_runtime_rounds_total"] < 100
    # and the server goes on
    got = client.completions.create(model=SERVED_NAME, prompt="Hello", max_tokens=4, temperature=0)
    assert got.usage.completion_tokens == 4


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/chat/completions"])
def test_client_disconnect_before_a_non_streaming_response_cancels_its_request(server, client, reference, path):
    import socket
    import threading

    before = scrape(server)
    body = {"model": SERVED_NAME, "max_tokens": 3000, "temperature": 0, "ignore_eos": True}
    body.update({"messages": [{"role": "user", "content": "Tell a long story"}]} if "chat" in path
                else {"prompt": "Once upon a time"})
    raw = json.dumps(body).encode()
    # another client's request, running beside it and after it left, gets its whole answer
    [want] = reference.generate("def add(a, b):", SamplingParams(max_new_tokens=40))
    other: list = []
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(raw)}\r\n\r\n".encode() + raw)
        assert wait_until(lambda: scrape(server)["saguaro_runtime_rounds_total"]
                          > before["saguaro_runtime_rounds_total"] + 2, 120), "the request is generating"
        beside = threading.Thread(target=lambda: other.append(client.completions.create(
            model=SERVED_NAME, prompt="def add(a, b):", max_tokens=40, temperature=0)))
        beside.start()
        assert wait_until(lambda: scrape(server)["saguaro_requests_running"] == 2, 120)
    # the socket is closed: nothing was answered, and the server notices without a write to fail
    assert wait_until(lambda: scrape(server)["saguaro_requests_running"] <= 1, 60)
    beside.join(300)
    assert other and other[0].choices[0].text == want.text and other[0].usage.completion_tokens == 40
    key = 'saguaro_requests_total{finish_reason="abandoned"}'
    assert scrape(server).get(key, 0) == before.get(key, 0) + 1
    # the runtime stopped generating for it: the round count settles far below the ~750 rounds its
    # 3000 tokens would take
    def settled() -> bool:
        rounds = scrape(server)["saguaro_runtime_rounds_total"]
        time.sleep(0.5)
        return scrape(server)["saguaro_runtime_rounds_total"] == rounds

    assert wait_until(settled, 60)
    assert scrape(server)["saguaro_runtime_rounds_total"] - before["saguaro_runtime_rounds_total"] < 300
    assert scrape(server)["saguaro_requests_running"] == 0


def test_sigterm_during_load_finishes_in_flight_requests_and_exits_0():
    import httpx

    with launch_server(serve_args()) as srv:
        n = 6
        results: list = [None] * n

        async def one(i: int, started: asyncio.Event, http: httpx.AsyncClient) -> None:
            body = {"model": SERVED_NAME, "prompt": PROMPTS[i], "max_tokens": 40, "temperature": 0,
                    "ignore_eos": True, "stream": True}
            chunks = []
            async with http.stream("POST", srv.url + "/v1/completions", json=body) as r:
                async for line in r.aiter_lines():
                    if line.startswith("data: "):
                        chunks.append(line[6:])
                        started.set()
            results[i] = chunks

        async def main() -> int:
            async with httpx.AsyncClient(timeout=300) as http:
                started = [asyncio.Event() for _ in range(n)]
                tasks = [asyncio.create_task(one(i, started[i], http)) for i in range(n)]
                await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started)), 300)
                srv.proc.send_signal(signal.SIGTERM)  # with every request mid-stream
                await asyncio.gather(*tasks)
            return 0

        asyncio.run(main())
        code = srv.proc.wait(120)
        assert code == 0, srv.log_tail()
        for chunks in results:
            assert chunks and chunks[-1] == "[DONE]"
            final = json.loads(chunks[-2])
            assert final["choices"][0]["finish_reason"] == "length"
            assert final["saguaro"]["generated_tokens"] == 40
        with pytest.raises(httpx.ConnectError):  # no longer admitting
            httpx.get(srv.url + "/health", timeout=10)


def test_sigterm_cancels_requests_that_outlast_the_shutdown_timeout_and_exits_0():
    import httpx

    with launch_server(serve_args("--shutdown-timeout", "1")) as srv:
        got: list = []

        async def main() -> None:
            body = {"model": SERVED_NAME, "prompt": "Once upon a time", "max_tokens": 3000, "temperature": 0,
                    "ignore_eos": True, "stream": True}
            async with httpx.AsyncClient(timeout=300) as http:
                try:
                    async with http.stream("POST", srv.url + "/v1/completions", json=body) as r:
                        async for line in r.aiter_lines():
                            if line.startswith("data: "):
                                got.append(line)
                                if len(got) == 2:
                                    srv.proc.send_signal(signal.SIGTERM)
                except httpx.HTTPError:
                    pass  # the server cut the stream after its shutdown timeout

        asyncio.run(main())
        assert srv.proc.wait(120) == 0, srv.log_tail()
        # cut short (a round commits about 4 tokens: 3000 tokens would be ~750 events)
        assert 2 <= len(got) < 700
