"""Python glue of the runtime: greedy exactness AR == SD == SSD with a tiny torch adapter."""
from __future__ import annotations

import pytest
import torch

from saguaro.speculation_config import SpeculationConfig
from saguaro.runtime import RequestParams, Runtime

from tiny_adapter import TinyAdapter


def greedy_reference(model: TinyAdapter, prompt: list[int], n: int) -> list[int]:
    ctx = list(prompt)
    out = []
    for _ in range(n):
        t = int(torch.argmax(model.logits_after([ctx])[0]))
        out.append(t)
        ctx.append(t)
    return out


def run(rt: Runtime, prompts, params) -> list:
    ids = [rt.submit(p, params) for p in prompts]
    results = []
    for i in ids:
        u = rt.result(i, timeout=60)
        results.append((u.new_tokens, u))
    return results


PROMPTS = [[1], [2, 3, 4, 5], [7, 1, 2], [0, 0, 6, 5, 4, 3, 2]]


@pytest.mark.parametrize("mode", ["ar", "sd", "ssd"])
@pytest.mark.parametrize("backup", ["jit", "fast"])
def test_greedy_matches_reference(mode: str, backup: str) -> None:
    target = TinyAdapter(vocab_size=16, seed=3)
    draft = TinyAdapter(vocab_size=16, like=target, noise=0.7)
    cfg = SpeculationConfig(mode=mode, k=3, backup=backup)
    with Runtime(target, draft, cfg) as rt:
        got = run(rt, PROMPTS, RequestParams(max_new_tokens=20))
        m = rt.metrics()
    for p, (toks, u) in zip(PROMPTS, got):
        assert toks == greedy_reference(target, p, 20)
        assert u.finish_reason == "length"
        assert u.metrics["generated_tokens"] == 20
    assert m["requests_finished"] == len(PROMPTS)
    assert target.live_sequences() == 0 and draft.live_sequences() == 0
