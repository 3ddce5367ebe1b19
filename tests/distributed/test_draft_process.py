"""The draft in another process on a real model (SmolLM2-135M, fp32): exact output, and faults that
lose nothing — the draft killed (-9), hung (SIGSTOP), back at its address (reconnect), and a target
process killed while the draft-server serves it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from conftest import ServerProcess, wait_until

from saguaro import Engine, SamplingParams

PROMPTS = ["def fibonacci(n):", "The three primary colors are", "import numpy as np\n\ndef normalize(x):"]
MODEL = "smollm2-135m"


def _engine(**kwargs) -> Engine:
    try:
        return Engine(MODEL, dtype=torch.float32, **kwargs)
    except ImportError as e:  # the model package is not installed here
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def reference():
    """The autoregressive tokens of each prompt (48 new tokens)."""
    with _engine(mode="ar") as e:
        return [o.token_ids for o in e.generate(PROMPTS, SamplingParams(max_new_tokens=48, ignore_eos=True))]


def _generate(engine: Engine, n: int = 48) -> list[list[int]]:
    outs = engine.generate(PROMPTS, SamplingParams(max_new_tokens=n, ignore_eos=True))
    assert all(o.finish_reason == "length" for o in outs), [(o.finish_reason, o.error) for o in outs]
    return [o.token_ids for o in outs]


@pytest.mark.parametrize("mode", ["sd", "ssd"])
def test_a_draft_process_gives_the_autoregressive_tokens(reference, mode):
    with _engine(draft=MODEL, mode=mode, draft_process=True) as e:
        assert _generate(e) == reference
        where = e.metrics()["draft_location"]
        proc = e.draft_process
    assert where["where"] == "draft-server" and where["connected"] and where["process"] == proc.pid
    assert where["wire"]["bytes_out"] > 0 and where["wire"]["bytes_in"] > 0
    assert wait_until(lambda: not proc.alive(), 15), "close() stopped the draft process"


def test_sampled_ssd_with_a_draft_process_equals_the_in_process_run():
    # C = 1 and jit backups: the tokens depend on the seeds only, not on which rounds hit the cache
    kw = dict(mode="ssd", saguaro_c=1.0, backup="jit", seed=7)
    sp = SamplingParams(max_new_tokens=40, temperature=0.8, top_p=0.95, ignore_eos=True)
    with _engine(draft=MODEL, **kw) as e:
        local = [o.token_ids for o in e.generate(PROMPTS, sp)]
    with _engine(draft=MODEL, draft_process=True, **kw) as e:
        remote = [o.token_ids for o in e.generate(PROMPTS, sp)]
        assert e.metrics()["speculations_from_cache"] > 0
    assert remote == local


@pytest.fixture
def server():
    procs: list[ServerProcess] = []

    def start(listen: str = "tcp://127.0.0.1:0", **kw) -> ServerProcess:
        try:
            p = ServerProcess(MODEL, listen, **kw)
        except RuntimeError as e:
            if "No module named" in str(e) or "not installed" in str(e):
                pytest.skip(str(e))
            raise
        procs.append(p)
        return p

    yield start
    for p in procs:
        try:
            p.signal(signal.SIGCONT)
        except ProcessLookupError:
            pass
        p.stop()


def _kill_during(engine: Engine, action, n: int = 200) -> list:
    """Generate n tokens for every prompt and apply action() once the first tokens are out."""
    streams = [engine.stream(p, SamplingParams(max_new_tokens=n, ignore_eos=True)) for p in PROMPTS]
    tokens = [[] for _ in PROMPTS]
    acted = False
    deadline = time.monotonic() + 600
    finished = [None] * len(PROMPTS)
    while any(f is None for f in finished):
        assert time.monotonic() < deadline, "requests did not finish within 600 s"
        for i, s in enumerate(streams):
            if finished[i] is not None:
                continue
            d = next(s, None)
            if d is None:
                continue
            tokens[i] += d.token_ids
            if d.finished:
                finished[i] = d
        if not acted and all(len(t) >= 8 for t in tokens):
            action()
            acted = True
    return [(t, d.finish_reason) for t, d in zip(tokens, finished)]


@pytest.mark.parametrize("fault", ["kill", "stop"])
def test_a_draft_that_dies_or_hangs_loses_no_request(server, fault):
    srv = server()
    with _engine(mode="ar") as e:
        ref = [o.token_ids for o in e.generate(PROMPTS, SamplingParams(max_new_tokens=120, ignore_eos=True))]
    with _engine(draft=srv.address, mode="ssd", draft_timeout=2.0) as e:
        t0 = time.monotonic()
        sig = signal.SIGKILL if fault == "kill" else signal.SIGSTOP
        got = _kill_during(e, lambda: srv.signal(sig), n=120)
        m = e.metrics()
    assert [t for t, _ in got] == ref, "every request finished with the target's tokens"
    assert [r for _, r in got] == ["length"] * len(PROMPTS)
    assert m["draft_failures"] == 1 and m["mode"] == "ar"
    assert m["draft_location"]["connected"] is False
    assert time.monotonic() - t0 < 300


def test_the_engine_uses_a_draft_again_once_a_server_is_back_at_its_address(server, reference):
    srv = server()
    address = srv.address
    # jit backups: the speculation governor (backup "auto") could rightly choose plain rounds here, and
    # this test is about the draft coming back, not about whether speculation pays on a busy machine
    with _engine(draft=address, mode="ssd", draft_timeout=2.0, backup="jit") as e:
        assert _generate(e) == reference
        srv.kill()
        assert _generate(e) == reference  # the draft is gone: autoregressively, exact
        assert e.metrics()["draft_failures"] == 1
        server(listen=address)  # a new draft-server at the same address
        assert wait_until(lambda: e.metrics()["draft_reconnects"] >= 1 or e.remote_draft.connected, 60)
        trees = e.metrics()["trees"]
        assert _generate(e) == reference
        m = e.metrics()
    assert m["draft_reconnects"] == 1 and m["mode"] == "ssd"
    assert m["trees"] > trees, "the new draft built trees"


_TARGET_SCRIPT = textwrap.dedent("""
    import sys, torch
    from saguaro import Engine, SamplingParams
    e = Engine("smollm2-135m", draft=sys.argv[1], mode="ssd", dtype=torch.float32)
    print("connected", flush=True)
    e.generate(["def f(x):"], SamplingParams(max_new_tokens=100000, ignore_eos=True))
""")


def test_a_target_killed_mid_run_frees_its_sequences_and_the_server_takes_the_next(server, reference):
    srv = server(extra=("--peer-timeout", "2"))
    target = subprocess.Popen([sys.executable, "-c", _TARGET_SCRIPT, srv.address], stdout=subprocess.PIPE, text=True)
    try:
        assert target.stdout.readline().strip() == "connected"
        time.sleep(2.0)  # it generates
    finally:
        target.kill()
        target.wait(timeout=30)
    assert wait_until(lambda: any("left" in line for line in srv.log), 30), "".join(srv.log[-5:])
    left = [line for line in srv.log if "left" in line][-1]
    assert "sequences are freed" in left
    with _engine(draft=srv.address, mode="ssd") as e:  # the next target is served, exactly
        assert _generate(e) == reference
    assert srv.proc.poll() is None, "the server is still up"


def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "saguaro", *args], capture_output=True, text=True, timeout=timeout)


def test_the_cli_generates_with_a_draft_server_and_says_where_the_draft_runs(server):
    srv = server()
    common = ("generate", "--target", MODEL, "--dtype", "float32", "--max-new-tokens", "32", "--ignore-eos",
              PROMPTS[0])
    ar = _cli(*common, "--mode", "ar")
    remote = _cli(*common, "--mode", "ssd", "--draft-at", srv.address)
    assert ar.returncode == 0 and remote.returncode == 0, (ar.stderr[-2000:], remote.stderr[-2000:])
    assert remote.stdout == ar.stdout
    assert f"[draft] {MODEL} at {srv.address}, connected" in remote.stderr


def test_the_cli_refuses_a_draft_address_with_a_draft_model():
    r = _cli("generate", "--draft", MODEL, "--draft-at", "tcp://127.0.0.1:1", "x", timeout=120)
    assert r.returncode == 2 and "--draft-at uses the draft a draft-server serves" in r.stderr


def test_draft_server_refuses_bad_cores_and_addresses():
    r = _cli("draft-server", "--draft", MODEL, "--cores", "a,b", timeout=120)
    assert r.returncode == 2 and "--cores takes a comma-separated list" in r.stderr
    r = _cli("draft-server", "--draft", MODEL, "--listen", "127.0.0.1:7600", timeout=120)
    assert r.returncode == 2 and "tcp://HOST:PORT" in r.stderr
