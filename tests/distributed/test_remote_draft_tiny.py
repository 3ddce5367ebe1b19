"""A draft behind a draft-server (a thread of this process, real sockets and gloo), tiny models:
exactness, the sampled stream, refusals, garbage on the port, and a target that goes away."""
from __future__ import annotations

import socket
import time

import pytest

from conftest import V, tiny_draft, tiny_target, wait_until

from saguaro.distributed import rendezvous
from saguaro.distributed.remote_draft import RemoteDraft
from saguaro.models.loading import LoadedModel
from saguaro.runtime import RequestParams, Runtime
from saguaro.speculation_config import SpeculationConfig

PROMPTS = [[1, 2, 3], [4, 5, 6, 7], [9], [3, 3, 3, 3, 3, 3]]


def _run(mode: str, draft, params: list[RequestParams]) -> tuple[list[list[int]], dict]:
    # C = 1 and jit backups: a sampled run's tokens then depend on the seeds only, never on timing
    # (which rounds hit the cache), so a remote draft must reproduce the in-process tokens exactly.
    config = SpeculationConfig(mode=mode, k=3, saguaro_c=1.0, backup="jit")
    with Runtime(tiny_target(), draft if mode != "ar" else None, config) as rt:
        ids = [rt.submit(p, q) for p, q in zip(PROMPTS, params)]
        outs = []
        for i in ids:
            u = rt.result(i, timeout=120)
            assert u.finish_reason == "length", (u.finish_reason, u.error)
            outs.append(u.new_tokens)
        return outs, rt.metrics()


def _greedy(n: int = 40) -> list[RequestParams]:
    return [RequestParams(max_new_tokens=n) for _ in PROMPTS]


def _sampled(n: int = 40) -> list[RequestParams]:
    return [RequestParams(temperature=0.9, top_k=8 if i % 2 else 0, max_new_tokens=n, seed=100 + i, stream=i)
            for i in range(len(PROMPTS))]


@pytest.mark.parametrize("mode", ["sd", "ssd"])
def test_greedy_with_a_remote_draft_equals_autoregressive(tiny_server, mode):
    server = tiny_server()
    reference, _ = _run("ar", None, _greedy())
    remote = RemoteDraft(server.address, vocab_size=V)
    try:
        got, metrics = _run(mode, remote, _greedy())
        stats = remote.stats()
    finally:
        remote.close()
    assert got == reference
    assert metrics["draft_failures"] == 0
    assert stats["wire"]["frames_out"] > 0 and stats["wire"]["frames_in"] > 0
    if mode == "ssd":
        assert metrics["trees"] > 0 and stats["wire"]["entries_in"] > 0
        assert metrics["speculations_from_cache"] > 0


def test_sampled_ssd_with_a_remote_draft_equals_the_in_process_run(tiny_server):
    server = tiny_server()
    local, _ = _run("ssd", tiny_draft(), _sampled())
    remote = RemoteDraft(server.address, vocab_size=V)
    try:
        got, metrics = _run("ssd", remote, _sampled())
        wire = remote.stats()["wire"]
    finally:
        remote.close()
    assert got == local
    assert metrics["speculations_from_cache"] > 0
    # q rows crossed only for the entries the target used: one answer per cache hit, none lost
    assert wire["q_requests"] == wire["q_answered"] == metrics["speculations_from_cache"]
    assert metrics["remote_q_fallbacks"] == 0
    greedy, _ = _run("ar", None, _greedy())
    assert got != greedy, "the run really sampled"


def test_the_server_frees_a_finished_targets_sequences_and_takes_the_next(tiny_server):
    draft = tiny_draft()
    server = tiny_server(LoadedModel(adapter=draft, tokenizer=None, name="tiny"))
    reference, _ = _run("ar", None, _greedy())
    for _ in range(2):
        remote = RemoteDraft(server.address, vocab_size=V)
        got, _ = _run("ssd", remote, _greedy())
        remote.close()
        assert got == reference
        assert wait_until(lambda: not server.server.busy, 10)
        assert draft._kv == {}, "the draft model holds no sequence of the target that left"
    assert [s["accepted"] for s in server.server.sessions] == [True, True]


def test_a_target_that_vanishes_is_noticed_and_its_sequences_freed(tiny_server):
    draft = tiny_draft()
    server = tiny_server(LoadedModel(adapter=draft, tokenizer=None, name="tiny"), peer_timeout_s=1.0,
                         heartbeat_s=0.2)
    remote = RemoteDraft(server.address, vocab_size=V, peer_timeout_s=1.0, heartbeat_s=0.2, reconnect=False)
    rt = Runtime(tiny_target(), remote, SpeculationConfig(mode="ssd", k=3))
    try:
        rid = rt.submit(PROMPTS[0], RequestParams(max_new_tokens=2000))
        assert wait_until(lambda: len(draft._kv) > 0, 10), "the draft holds the target's sequence"
        # the target goes silent without a goodbye: its link stops, as if its process had been killed
        t0 = time.monotonic()
        remote._link._stop.set()
        assert wait_until(lambda: not server.server.busy, 10), "the server noticed the silent target"
        assert time.monotonic() - t0 < 5
        assert draft._kv == {}
        assert "no message from the target for 1 s" in server.server.sessions[-1]["ended"]
        rt.cancel(rid)
    finally:
        rt.close()
        remote.close(drain_s=0.1)
    # and it serves the next target
    remote2 = RemoteDraft(server.address, vocab_size=V)
    got, _ = _run("sd", remote2, _greedy(10))
    remote2.close()
    assert got == _run("ar", None, _greedy(10))[0]


def test_a_draft_of_another_vocabulary_size_is_refused_with_both_sizes(tiny_server):
    server = tiny_server()
    with pytest.raises(rendezvous.DraftRefused, match=rf"target's vocabulary has {V + 1} entries but the draft's {V}"):
        RemoteDraft(server.address, vocab_size=V + 1)


class _FakeTokenizer:
    """The part of saguaro.models.Tokenizer that vocab_table reads."""

    def __init__(self, tokens: list[str]) -> None:
        self.backend = self
        self._vocab = {t: i for i, t in enumerate(tokens)}

    def get_vocab(self, with_added_tokens: bool = True) -> dict:
        return dict(self._vocab)


def test_a_draft_with_another_token_table_is_refused_both_ways(tiny_server):
    tokens = [f"t{i}" for i in range(V)]
    server = tiny_server(LoadedModel(adapter=tiny_draft(), tokenizer=_FakeTokenizer(tokens), name="tiny"))
    other = list(tokens)
    other[7] = "seven"
    # the target checks the server's table ...
    with pytest.raises(rendezvous.DraftRefused, match=r"first difference at id 7: target 'seven' vs draft 't7'"):
        RemoteDraft(server.address, vocab_size=V, vocab_table=other)
    # ... and the server checks the target's (a target that skipped its own check is refused too)
    store = _client_store(server.address)
    session = rendezvous.say_hello(store, rendezvous.wire_version(), V, other, "127.0.0.1", "127.0.0.1")
    with pytest.raises(rendezvous.DraftRefused, match=r"first difference at id 7"):
        rendezvous.await_welcome(store, session, server.address, 10)
    # the same table pairs
    remote = RemoteDraft(server.address, vocab_size=V, vocab_table=tokens)
    remote.close()


def test_another_wire_version_is_refused_with_a_clear_message(tiny_server):
    server = tiny_server()
    store = _client_store(server.address)
    session = rendezvous.say_hello(store, rendezvous.wire_version() + 1, V, None, "127.0.0.1", "127.0.0.1")
    with pytest.raises(rendezvous.DraftRefused, match=r"wire version \d+ is not this server's \d+"):
        rendezvous.await_welcome(store, session, server.address, 10)


def test_a_second_target_is_refused_as_busy_while_one_is_served(tiny_server):
    server = tiny_server()
    first = RemoteDraft(server.address, vocab_size=V)
    try:
        with pytest.raises(rendezvous.DraftRefused, match="busy"):
            RemoteDraft(server.address, vocab_size=V)
    finally:
        first.close()


def test_garbage_on_the_port_leaves_the_server_serving(tiny_server):
    server = tiny_server(hello_wait_s=1.0)
    host, port = server.address.removeprefix("tcp://").rsplit(":", 1)
    for payload in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", bytes(range(256)) * 8, b"\x00" * 3):
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(payload)
            time.sleep(0.1)
    # a client that speaks the store's protocol but opens a session without a valid hello
    store = _client_store(server.address)
    store.add(rendezvous.SESSIONS_KEY, 1)
    store.set(f"s{rendezvous.sessions_opened(store)}/hello", b"not json")
    assert wait_until(lambda: any(not s["accepted"] for s in server.server.sessions), 10)
    remote = RemoteDraft(server.address, vocab_size=V)
    got, _ = _run("sd", remote, _greedy(10))
    remote.close()
    assert got == _run("ar", None, _greedy(10))[0]


def test_nothing_listening_is_a_clear_connection_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(rendezvous.DraftRefused, match="no draft-server answers at .*saguaro draft-server"):
        RemoteDraft(f"tcp://127.0.0.1:{port}", vocab_size=V, connect_timeout_s=1.0)


@pytest.mark.parametrize("bad", ["127.0.0.1:7600", "tcp://127.0.0.1", "tcp://:80", "http://x:1", "tcp://h:1/x"])
def test_a_malformed_address_says_the_form(bad):
    with pytest.raises(ValueError, match="tcp://HOST:PORT"):
        RemoteDraft(bad, vocab_size=V)


def _client_store(address: str):
    import datetime

    import torch.distributed as dist

    host, port = address.removeprefix("tcp://").rsplit(":", 1)
    return dist.TCPStore(host, int(port), is_master=False, wait_for_workers=False,
                         timeout=datetime.timedelta(seconds=10))

