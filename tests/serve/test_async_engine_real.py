"""AsyncEngine and the runtime's update callback on the real runtime (SmolLM2-135M, float32):
concurrent coroutines equal their outputs alone and share the batch, they are woken by the
runtime's notification (a bounded number of polls, no busy polling), and a cancelled task cancels
its request in the runtime."""
from __future__ import annotations

import asyncio
import sys

import pytest

import saguaro
from saguaro import SamplingParams
from serve_helpers import K

pytestmark = pytest.mark.slow

PROMPTS = ["def add(a, b):", "import os\n", "class Stack:", "# sort a list\n", "The capital of France is",
           "for i in range(10):", "SELECT * FROM", "Once upon a time"]


class CountingRuntime:
    """Passes every call to the runtime; counts polls per request id."""

    def __init__(self, runtime):
        self._rt = runtime
        self.polls: dict = {}
        self.timeouts: set = set()

    def poll(self, rid, timeout=None):
        self.polls[rid] = self.polls.get(rid, 0) + 1
        self.timeouts.add(timeout)
        return self._rt.poll(rid, timeout)

    def __getattr__(self, name):
        return getattr(self._rt, name)


@pytest.fixture(scope="module")
def async_engine(reference):
    # the reference engine's loaded models; request ids are unique in the process, so two runtimes
    # may share them (used one after the other here)
    e = saguaro.AsyncEngine(reference.target, reference.draft, mode="ssd", k=K)
    yield e
    e.close()


def test_concurrent_coroutines_equal_outputs_alone_batched_and_woken_by_notification(async_engine, reference):
    sps = [SamplingParams(max_new_tokens=8 + 3 * i, stop=["\n\n"] if i % 2 else []) for i in range(len(PROMPTS))]
    expected = [reference.generate(p, sp)[0] for p, sp in zip(PROMPTS, sps)]
    book = async_engine._book
    counting = CountingRuntime(book.runtime)
    book.runtime = counting
    before = async_engine.runtime_metrics()

    async def one(p, sp):
        s = async_engine.stream(p, sp)
        text = "".join([d.text async for d in s])
        return text, s.output

    async def run():
        return await asyncio.gather(*(one(p, sp) for p, sp in zip(PROMPTS, sps)))

    try:
        results = asyncio.run(run())
    finally:
        book.runtime = counting._rt
    after = async_engine.runtime_metrics()
    for (text, out), want in zip(results, expected):
        assert out.token_ids == want.token_ids and text == want.text == out.text
    rounds = after["batched_rounds"] - before["batched_rounds"]
    rows = after["round_rows"] - before["round_rows"]
    assert rows / rounds > 1.0, "the coroutines' requests shared rounds"
    # each request is polled about once per notification (a round), never in a loop
    assert len(counting.polls) == len(PROMPTS) and max(counting.polls.values()) <= 2 * (rounds + 2)
    assert counting.timeouts == {0.0}, "coroutines never wait inside the runtime's poll"


def test_async_generate_equals_engine_generate(async_engine, reference):
    sp = SamplingParams(max_new_tokens=10)
    want = reference.generate(PROMPTS[:3], sp)
    got = asyncio.run(async_engine.generate(PROMPTS[:3], sp))
    assert [o.token_ids for o in got] == [o.token_ids for o in want]


def test_cancelled_task_cancels_its_request_in_the_runtime(async_engine):
    book = async_engine._book

    async def run():
        before = async_engine.runtime_metrics()["requests_finished"]
        s = async_engine.stream("Once upon a time", SamplingParams(max_new_tokens=3000, ignore_eos=True))

        async def consume():
            async for _ in s:
                pass

        task = asyncio.ensure_future(consume())
        while not s._req.out.token_ids:  # bounded by the test's own progress: tokens arrive each round
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(600):  # up to ~30 s for the runtime to end the round in flight
            if book.orphans() == 0 and async_engine.runtime_metrics()["requests_finished"] > before:
                break
            await asyncio.sleep(0.05)
        assert book.orphans() == 0
        assert async_engine.runtime_metrics()["requests_finished"] == before + 1
        assert len(s._req.out.token_ids) < 3000

    asyncio.run(run())


def test_runtime_update_callback_names_the_requests_and_survives_a_failing_callback(reference, monkeypatch):
    from saguaro.runtime import Runtime

    notified: list = []
    unraisable: list = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: unraisable.append(u))
    ids = reference.target.tokenizer.encode("def add(a, b):")
    with Runtime(reference.target.adapter, reference.draft.adapter, saguaro.SpeculationConfig(k=K)) as rt:
        rt.set_update_callback(lambda batch: notified.append(list(batch)))
        a = rt.submit(ids)
        ua = rt.result(a, timeout=300)
        assert any(a in batch for batch in notified) and all(len(set(b)) == len(b) for b in notified)

        def boom(batch):
            raise ValueError("a callback that fails")

        rt.set_update_callback(boom)
        b = rt.submit(ids)
        assert rt.result(b, timeout=300).new_tokens == ua.new_tokens
        assert unraisable and "a callback that fails" in str(unraisable[0].exc_value)
        rt.set_update_callback(None)
        n = len(notified)
        rt.result(rt.submit(ids), timeout=300)
        assert len(notified) == n


def test_engine_generate_over_many_requests_waits_on_notifications(reference):
    """The blocking Engine.generate sleeps until the runtime's notification: about one poll per
    request per round, and never a poll that waits a time slice."""
    book = reference._book
    counting = CountingRuntime(book.runtime)
    before = reference.metrics()["batched_rounds"]
    book.runtime = counting
    try:
        outs = reference.generate(PROMPTS[:4], SamplingParams(max_new_tokens=24))
    finally:
        book.runtime = counting._rt
    rounds = reference.metrics()["batched_rounds"] - before
    assert all(len(o.token_ids) == 24 for o in outs)
    assert len(counting.polls) == 4 and max(counting.polls.values()) <= 2 * (rounds + 2)
    # no time slices: a look without waiting while several are open, a plain wait for the last one
    assert counting.timeouts <= {0.0, None}
