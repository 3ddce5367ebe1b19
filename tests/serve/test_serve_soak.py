"""Soak: 1,000 short requests through the server; none lost, resident memory flat, and the /metrics
counters equal the sums of the responses' own figures."""
from __future__ import annotations

import asyncio

import pytest

from saguaro.serve.launch import launch_server
from serve_helpers import SERVED_NAME, scrape, serve_args

pytestmark = pytest.mark.slow

N = 1000
CONCURRENCY = 16
CHUNKS = 4
PROMPTS = ["def add(a, b):", "import os\n", "class Stack:", "# sort a list\n", "Once upon a time"]


def _counter(m: dict, name: str) -> float:
    return m.get(name, 0.0)


def _run(server, n: int, first: int = 0) -> list[dict]:
    import httpx

    async def main() -> list[dict]:
        sem = asyncio.Semaphore(CONCURRENCY)
        async with httpx.AsyncClient(base_url=server.url, timeout=600,
                                     limits=httpx.Limits(max_connections=CONCURRENCY)) as http:
            async def one(i: int) -> dict:
                async with sem:
                    body = {"model": SERVED_NAME, "prompt": PROMPTS[i % len(PROMPTS)], "max_tokens": 2 + i % 5,
                            "temperature": 0.7, "seed": i, "ignore_eos": True}
                    if i % 2:  # half chat, half completions
                        r = await http.post("/v1/chat/completions", json={
                            **{k: v for k, v in body.items() if k != "prompt"},
                            "messages": [{"role": "user", "content": body["prompt"]}]})
                    else:
                        r = await http.post("/v1/completions", json=body)
                    assert r.status_code == 200, r.text
                    return r.json()
            return await asyncio.gather(*(one(i) for i in range(first, first + n)))

    return asyncio.run(main())


HEAP = "saguaro_process_heap_in_use_bytes"


@pytest.fixture(scope="module")
def server():
    """The soak's own server, speculating every round (the jit backup). With the default backup the
    speculation governor runs rounds plain where plain measures faster on this machine, and after the
    other tests' load it may not measure speculation again within the soak (its probes are held to 2% of
    the time; a clean-clone CI on an Ice Lake Xeon saw no proposed token in 1,000 requests): then the
    speculation counters below would compare zeros. The governor has its own tests."""
    with launch_server(serve_args("--backup", "jit")) as s:
        yield s


def test_soak_1000_requests(server, capsys):
    _run(server, 4 * CONCURRENCY)  # warm-up: allocator pools, first-use caches
    rss = [server.rss_kib()]
    before = scrape(server)
    heap = [before.get(HEAP)]
    responses: list[dict] = []
    for _ in range(CHUNKS):
        responses += _run(server, N // CHUNKS, len(responses))
        rss.append(server.rss_kib())
        heap.append(scrape(server).get(HEAP))
    after = scrape(server)
    with capsys.disabled():
        print(f"\nsoak: {N} requests, server RSS (MiB) after each {N // CHUNKS}: "
              + ", ".join(f"{r / 1024:.1f}" for r in rss)
              + "; heap in use (MiB): " + ", ".join("n/a" if h is None else f"{h / 2**20:.1f}" for h in heap))

    assert len(responses) == N
    assert all(r["choices"][0]["finish_reason"] == "length" for r in responses)
    assert [r["usage"]["completion_tokens"] for r in responses] == [2 + i % 5 for i in range(N)]

    def delta(name: str) -> float:
        return _counter(after, name) - _counter(before, name)

    figures = [r["saguaro"] for r in responses]
    assert delta('saguaro_requests_total{finish_reason="length"}') == N
    assert delta("saguaro_generation_tokens_total") == sum(r["usage"]["completion_tokens"] for r in responses)
    assert delta("saguaro_prompt_tokens_total") == sum(r["usage"]["prompt_tokens"] for r in responses)
    for metric, field in (("saguaro_draft_proposed_tokens_total", "proposed_tokens"),
                          ("saguaro_draft_accepted_tokens_total", "accepted_tokens"),
                          ("saguaro_cache_lookups_total", "cache_lookups"),
                          ("saguaro_cache_hits_total", "cache_hits"),
                          ('saguaro_backups_total{kind="jit"}', "backups_jit"),
                          ('saguaro_backups_total{kind="fast"}', "backups_fast")):
        assert delta(metric) == sum(f[field] for f in figures), metric
    assert sum(f["proposed_tokens"] for f in figures) > 0
    assert delta("saguaro_time_to_first_token_seconds_count") == N
    assert after["saguaro_requests_running"] == 0 and after["saguaro_requests_waiting"] == 0
    # No leak: what the allocator has handed out and not taken back (Python's larger objects, tensors,
    # the runtime's buffers) does not grow with the requests. A leak grows it in every quarter (one of
    # 4 KiB a request by 1 MiB, of a logits row ~47 MiB); a working set that grows once, as larger
    # batches first run (8-36 MiB here, in any quarter), grows it in one.
    if None not in heap:
        assert min(b - a for a, b in zip(heap, heap[1:])) < 1 * 2**20, heap
    # Resident memory: the last quarter adds at most 32 MiB (a leak of 128 KiB a request; the bound this
    # test had as 0.25% of the 7.6-14 GB the server reached while its KV slots were zeroed up front). It
    # may rise by several MiB a quarter without a leak: the speculation cache's q slab (about 100 MiB
    # here, allocated once and never zeroed) becomes resident page by page as sampled entries land in
    # slots not written before (this server speculates every round), and so do the KV slots' pages as
    # positions are first written (docs/serving.md, "Memory"); both stop at their buffers' sizes.
    # Measured here: 1503, 1564, 1564, 1568, 1566 MiB.
    assert rss[-1] - rss[-2] < 32 * 1024, rss
