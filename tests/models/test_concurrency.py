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
