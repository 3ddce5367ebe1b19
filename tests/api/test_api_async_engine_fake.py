"""AsyncEngine's own logic over the test-double runtime: outputs equal Engine's, a coroutine sleeps
until the runtime's notification (sent from another thread) instead of polling, and cancelling the
awaiting task cancels the request."""
from __future__ import annotations

import asyncio
import threading

import pytest

from saguaro import SamplingParams
from api_fakes import FakeRuntime, FakeUpdate, fake_model


class GatedRuntime(FakeRuntime):
    """A fake whose rounds only become ready when the test releases them (then it notifies, from
    whichever thread released them); counts polls."""

    def __init__(self, *a):
        super().__init__(*a)
        self.ready: dict = {}
        self.polls = 0

    def poll(self, rid, timeout=None):
        self.polls += 1
        with self.lock:
            go = self.requests[rid]["done"] or self.ready.get(rid, 0) > 0
            if go and not self.requests[rid]["done"]:
                self.ready[rid] -= 1
        return self._round(rid) if go else FakeUpdate([])

    def release(self, rid):
        with self.lock:
            self.ready[rid] = self.ready.get(rid, 0) + 1
        self.callback([rid])

    def cancel(self, rid):
        super().cancel(rid)
        self.callback([rid])


@pytest.fixture
def async_engine_factory(fake_engine_factory, monkeypatch):
    import saguaro.engine as eng
    from saguaro.async_engine import AsyncEngine

    def make(runtime=FakeRuntime, **kw):
        monkeypatch.setattr(eng, "_make_runtime", lambda t, d, c: runtime(t, d, c))
        kw.setdefault("target", fake_model())
        kw.setdefault("draft", fake_model())
        return AsyncEngine(**kw)

    return make


def test_generate_and_stream_equal_the_engine(async_engine_factory, fake_engine_factory):
    sps = [SamplingParams(max_new_tokens=n, stop=s) for n, s in ((5, []), (9, ["d!"]), (7, ["orl"]))]
    with fake_engine_factory() as eng:
        want = eng.generate(["a", "b", "c"], sps)
        want_deltas = [d.text for d in eng.stream("a", sps[1])]

    async def run():
        e = async_engine_factory()
        try:
            got = await e.generate(["a", "b", "c"], sps)
            s = e.stream("a", sps[1])
            deltas = [d.text async for d in s]
            return got, deltas, s.output
        finally:
            e.close()

    got, deltas, output = asyncio.run(run())
    assert [(o.text, o.token_ids, o.finish_reason) for o in got] == [(o.text, o.token_ids, o.finish_reason)
                                                                      for o in want]
    assert deltas == want_deltas and output.text == want[1].text


def test_coroutine_sleeps_until_notified_from_another_thread(async_engine_factory):
    async def run():
        e = async_engine_factory(GatedRuntime)
        rt = GatedRuntime.instances[-1]
        try:
            s = e.stream("a", SamplingParams(max_new_tokens=6))
            rid = rt.submitted[-1][0]
            task = asyncio.ensure_future(s.__anext__())
            for _ in range(20):
                await asyncio.sleep(0)
            assert not task.done()
            polls = rt.polls
            assert polls == 1, "one look, then it waits for the notification"
            threading.Thread(target=rt.release, args=(rid,)).start()
            d = await asyncio.wait_for(task, 30)
            assert d.token_ids == [128, 129, 130] and d.text == "hello world"
            assert rt.polls <= polls + 2
        finally:
            e.close()

    asyncio.run(run())


def test_cancelling_the_awaiting_task_cancels_the_request(async_engine_factory):
    async def run():
        e = async_engine_factory(GatedRuntime)
        rt = GatedRuntime.instances[-1]
        try:
            s = e.stream("a", SamplingParams(max_new_tokens=50))
            rid = rt.submitted[-1][0]
            task = asyncio.ensure_future(s.__anext__())
            for _ in range(5):
                await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert rt.requests[rid]["reason"] == "cancelled"
            assert e._book.orphans() == 0, "the cancelled request's final update was collected"
            assert [d async for d in s] == []
        finally:
            e.close()

    asyncio.run(run())


def test_generate_cancelled_cancels_all_its_requests(async_engine_factory):
    async def run():
        e = async_engine_factory(GatedRuntime)
        rt = GatedRuntime.instances[-1]
        try:
            task = asyncio.ensure_future(e.generate(["a", "b"], SamplingParams(max_new_tokens=50)))
            for _ in range(10):
                await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert {r["reason"] for r in rt.requests.values()} == {"cancelled"}
        finally:
            e.close()

    asyncio.run(run())


def test_closed_engine_and_bad_input(async_engine_factory):
    async def run():
        e = async_engine_factory()
        with pytest.raises(ValueError, match="prompt 0 is empty"):
            e.stream("")
        with pytest.raises(ValueError, match="stream\\(\\) takes one prompt, got 2"):
            e.stream(["a", "b"])
        e.close()
        e.close()
        with pytest.raises(RuntimeError, match="this AsyncEngine is closed"):
            await e.generate("a")
        with pytest.raises(RuntimeError, match="this AsyncEngine is closed"):
            e.stream("a")

    asyncio.run(run())
