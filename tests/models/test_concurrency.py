"""A target and a draft adapter driven from two threads at once give the results of running alone."""
from __future__ import annotations

import threading

import torch

from conftest import make_hf, native_from_hf


def _work(adapter, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    tok = lambda n: torch.randint(0, 97, (n,), generator=g).tolist()  # noqa: E731
    out = [adapter.prefill([0, 1], [tok(30), tok(17)])]
    for step in range(6):
        out.append(adapter.extend([0, 1], [tok(3), tok(1)]))
        for d in range(3):
            out.append(adapter.tree_step([0, 1, 0], [20 + step, 15, 25], tok(3), d))
        adapter.truncate(1, 15)
    return out


def test_two_adapters_in_two_threads():
    target = native_from_hf(make_hf("qwen2-untied", seed=1), num_threads=1)
    draft = native_from_hf(make_hf("qwen3", seed=2), num_threads=1)
    alone = [_work(target, 5), _work(draft, 6)]
    for a in (target, draft):
        a.release(0)
        a.release(1)
    results: dict[int, list[torch.Tensor]] = {}
    errors: list[BaseException] = []

    def run(i, adapter, seed):
        try:
            results[i] = _work(adapter, seed)
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(0, target, 5)), threading.Thread(target=run, args=(1, draft, 6))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i in (0, 1):
        assert all(torch.equal(a, b) for a, b in zip(results[i], alone[i]))


def test_interleaved_trees_of_two_runtimes_on_one_draft():
    """Runtimes sharing a draft (their sequence ids differ) step their trees in turn: each tree gives
    the logits it gives alone (the adapter keeps a plan per live tree, not only the last one)."""
    draft = native_from_hf(make_hf("qwen2-untied", seed=2))
    g = torch.Generator().manual_seed(3)
    tok = lambda n: torch.randint(0, 97, (n,), generator=g).tolist()  # noqa: E731
    prompts, branches = {10: tok(12), 20: tok(9)}, {10: [tok(3) for _ in range(3)], 20: [tok(2) for _ in range(3)]}
    rows = {10: ([10, 10, 10], [12, 12, 11]), 20: ([20, 20], [9, 8])}

    def tree(seq, d):
        return draft.tree_step(rows[seq][0], rows[seq][1], branches[seq][d], d)

    alone = {}
    for seq in (10, 20):
        draft.prefill([seq], [prompts[seq]])
        alone[seq] = [tree(seq, d) for d in range(3)]
        draft.release(seq)
    draft.prefill([10, 20], [prompts[10], prompts[20]])
    both = {10: [], 20: []}
    for d in range(3):
        for seq in (10, 20):
            both[seq].append(tree(seq, d))
    for seq in (10, 20):
        assert all(torch.equal(a, b) for a, b in zip(alone[seq], both[seq]))


def test_runtimes_sharing_one_pair_of_models_at_once_match_ar():
    """AR, SD and SSD runtimes over the same two loaded models, serving at the same time (an engine per
    mode over one copy of the weights, as the benchmark does): every output is the target's greedy
    output and no draft failure makes a runtime fall back."""
    from saguaro.runtime import RequestParams
    from saguaro.speculation_config import SpeculationConfig
    from saguaro.runtime import Runtime

    target = native_from_hf(make_hf("qwen2-untied", seed=1))
    draft = native_from_hf(make_hf("qwen2-untied", seed=0))
    g = torch.Generator().manual_seed(4)
    prompts = [torch.randint(0, 97, (n,), generator=g).tolist() for n in (9, 6, 11, 7)]
    with Runtime(target, None, SpeculationConfig(mode="ar")) as rt:
        want = [rt.result(rt.submit(p, RequestParams(max_new_tokens=20)), timeout=120).new_tokens for p in prompts]
    runtimes = [Runtime(target, None, SpeculationConfig(mode="ar")),
                Runtime(target, draft, SpeculationConfig(mode="sd", k=3)),
                Runtime(target, draft, SpeculationConfig(mode="ssd", k=2, backup="jit"))]
    got: dict[int, list] = {}
    errors: list[BaseException] = []

    def serve(i, rt):
        try:
            out = []
            for p in prompts:  # one request at a time: each finishes (and is released) before the next
                out.append(rt.result(rt.submit(p, RequestParams(max_new_tokens=20)), timeout=120).new_tokens)
            got[i] = out
        except BaseException as e:  # surfaced below
            errors.append(e)

    try:
        threads = [threading.Thread(target=serve, args=(i, rt)) for i, rt in enumerate(runtimes)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        for i, rt in enumerate(runtimes):
            assert got[i] == want, i
            assert rt.metrics()["draft_failures"] == 0
    finally:
        for rt in runtimes:
            rt.close()
    assert target._cache.live_ids() == [] and draft._cache.live_ids() == []  # every runtime released its own
