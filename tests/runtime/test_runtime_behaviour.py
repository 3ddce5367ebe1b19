"""Python glue behaviour: seeded determinism, SSD == SD at C = 1, failures, cancel, close, errors."""
from __future__ import annotations

import threading

import pytest
import torch

from saguaro.speculation_config import SpeculationConfig
from saguaro.runtime import RequestParams, Runtime

from tiny_adapter import TinyAdapter

PROMPTS = [[1], [2, 3, 4, 5], [7, 1, 2], [0, 0, 6, 5, 4, 3, 2], [3, 3]]


def pair(noise: float = 0.7) -> tuple[TinyAdapter, TinyAdapter]:
    target = TinyAdapter(vocab_size=12, seed=5, scale=1.5)
    return target, TinyAdapter(vocab_size=12, like=target, noise=noise)


def drain(rt: Runtime, rid: int):
    u = rt.result(rid, timeout=60)
    return u.new_tokens, u, u.messages


def sampled(i: int, **kw) -> RequestParams:
    return RequestParams(temperature=0.9, top_k=(0 if i % 2 else 6), top_p=(0.95 if i % 3 == 0 else 1.0),
                         max_new_tokens=25, seed=100 + i, stream=i, **kw)


def run(config: SpeculationConfig, prompts, params, models=None) -> list[list[int]]:
    target, draft = models or pair()
    with Runtime(target, draft, config) as rt:
        ids = [rt.submit(p, rp) for p, rp in zip(prompts, params)]
        return [drain(rt, i)[0] for i in ids]


@pytest.mark.parametrize("mode", ["ar", "sd", "ssd"])
def test_same_seed_same_tokens_across_runs_and_batch_sizes(mode: str) -> None:
    cfg = SpeculationConfig(mode=mode, k=3, backup="jit")
    params = [sampled(i) for i in range(len(PROMPTS))]
    batch = run(cfg, PROMPTS, params)
    assert run(cfg, PROMPTS, params) == batch
    for i, p in enumerate(PROMPTS):
        assert run(cfg, [p], [params[i]]) == [batch[i]], f"request {i} alone differs from in the batch"


def test_ssd_equals_sd_with_the_same_seed_at_c1() -> None:
    params = [sampled(i) for i in range(len(PROMPTS))]
    # backup "jit": every round speculates (with "auto" a batch may back off to plain rounds, exact
    # but with other draws for a seed)
    sd = run(SpeculationConfig(mode="sd", k=3, backup="jit"), PROMPTS, params)
    for backup in ("jit", "fast"):
        for budget in (2, 6):
            ssd = run(SpeculationConfig(mode="ssd", k=3, backup=backup, fanout_budget=budget), PROMPTS, params)
            # fast backups propose other tokens than the draft would: same distribution, other draws
            if backup == "jit":
                assert ssd == sd, (backup, budget)


def test_different_seeds_differ() -> None:
    cfg = SpeculationConfig(mode="ssd", k=3)
    a = run(cfg, PROMPTS[:1], [sampled(0)])
    other = sampled(0)
    other.seed = 999
    b = run(cfg, PROMPTS[:1], [other])
    assert a != b


class FailingDraft(TinyAdapter):
    """Raises from its n-th tree step on."""

    def __init__(self, *a, fail_at: int = 3, **kw) -> None:
        super().__init__(*a, **kw)
        self.fail_at = fail_at
        self.steps = 0

    def tree_step(self, *a, **kw):
        self.steps += 1
        if self.steps >= self.fail_at:
            raise RuntimeError("draft device lost")
        return super().tree_step(*a, **kw)


def greedy(target: TinyAdapter, prompt: list[int], n: int) -> list[int]:
    ctx, out = list(prompt), []
    for _ in range(n):
        t = int(torch.argmax(target.logits_after([ctx])[0]))
        out.append(t)
        ctx.append(t)
    return out


@pytest.mark.parametrize("strict", [False, True])
def test_draft_failure_falls_back_or_fails(strict: bool) -> None:
    target = TinyAdapter(vocab_size=12, seed=5, scale=1.5)
    draft = FailingDraft(vocab_size=12, like=target, noise=0.7)
    # backup "jit": every round speculates, so the draft reaches its failing step whatever the
    # speculation governor would measure of these tiny models
    with Runtime(target, draft, SpeculationConfig(mode="ssd", k=3, strict=strict, backup="jit")) as rt:
        ids = [rt.submit(p, RequestParams(max_new_tokens=20)) for p in PROMPTS]
        results = [drain(rt, i) for i in ids]
        m = rt.metrics()
    assert m["draft_failures"] == 1
    # a request admitted after the failure is not told about it (strict: it fails "earlier")
    for p, (toks, u, msgs) in zip(PROMPTS, results):
        if strict:
            assert u.finish_reason == "error"
            assert "draft device lost" in u.error or "failed earlier" in u.error
        else:
            assert u.finish_reason == "length"
            assert toks == greedy(target, p, 20)
    if strict:
        assert any("draft device lost" in u.error for _, u, _ in results)
    else:
        assert any("draft device lost" in m for _, _, msgs in results for m in msgs)


class NanTarget(TinyAdapter):
    """NaN logits for the second sequence prefilled (request ids are unique in the process, so a test
    cannot know them before it submits)."""

    poisoned = None

    def prefill(self, seq_ids, prompts):
        out = super().prefill(seq_ids, prompts)
        self._prefilled = getattr(self, "_prefilled", []) + list(seq_ids)
        if len(self._prefilled) >= 2:
            self.poisoned = self._prefilled[1]
        return out

    def extend(self, seq_ids, tokens):
        out = super().extend(seq_ids, tokens)
        r = 0
        for s, ts in zip(seq_ids, tokens):
            if s == self.poisoned:
                out[r:r + len(ts)] = float("nan")
            r += len(ts)
        return out


def test_target_nan_fails_only_that_request() -> None:
    target = NanTarget(vocab_size=12, seed=5, scale=1.5)
    draft = TinyAdapter(vocab_size=12, like=target, noise=0.7)
    with Runtime(target, draft, SpeculationConfig(mode="ssd", k=3)) as rt:
        ids = [rt.submit(p, RequestParams(max_new_tokens=15)) for p in PROMPTS[:3]]
        results = [drain(rt, i) for i in ids]
    assert ids[1] == target.poisoned
    assert results[1][1].finish_reason == "error" and "NaN" in results[1][1].error
    for i in (0, 2):
        assert results[i][0] == greedy(target, PROMPTS[i], 15)
    assert target.live_sequences() == 0 and draft.live_sequences() == 0


def test_cancel_close_and_errors() -> None:
    target, draft = pair()
    target.max_context = draft.max_context = 100_000
    rt = Runtime(target, draft, SpeculationConfig(mode="ssd", k=3))
    rid = rt.submit([1, 2], RequestParams(max_new_tokens=50_000))
    rt.poll(rid, timeout=30)
    with pytest.raises(TimeoutError, match=f"request {rid} did not finish within 0.05 s"):
        rt.result(rid, timeout=0.05)  # 50,000 tokens: still running
    rt.cancel(rid)
    toks, u, _ = drain(rt, rid)
    assert u.finish_reason == "cancelled"
    with pytest.raises(ValueError, match="unknown request id"):
        rt.poll(rid, timeout=0)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        rt.submit([99], RequestParams())
    with pytest.raises(ValueError, match="at least one token"):
        rt.submit([], RequestParams())
    with pytest.raises(ValueError, match="top_p"):
        rt.submit([1], RequestParams(top_p=0.0))
    # close with a request in flight: it finishes "cancelled", from another thread's poll too
    rid = rt.submit([1, 2], RequestParams(max_new_tokens=50_000))
    rt.poll(rid, timeout=30)
    done = {}
    t = threading.Thread(target=lambda: done.setdefault("u", drain(rt, rid)[1]))
    t.start()
    rt.close()
    rt.close()
    t.join(30)
    assert done["u"].finish_reason == "cancelled"
    with pytest.raises(RuntimeError, match="closed"):
        rt.submit([1], RequestParams())
    assert target.live_sequences() == 0 and draft.live_sequences() == 0


def test_bad_config_is_a_value_error() -> None:
    target, draft = pair()
    with pytest.raises(ValueError, match="mode"):
        Runtime(target, draft, SpeculationConfig(mode="fast"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fanout"):
        Runtime(target, draft, SpeculationConfig(mode="ssd", k=3, fanout_kind="manual", fanout=[1, 2]))
    with pytest.raises(ValueError, match="draft"):
        Runtime(target, None, SpeculationConfig(mode="sd"))
    with pytest.raises(ValueError, match="vocab"):
        Runtime(target, TinyAdapter(vocab_size=13), SpeculationConfig(mode="sd"))
    with pytest.raises(ValueError, match="two adapter objects"):
        Runtime(target, target, SpeculationConfig(mode="ssd"))
    with pytest.raises(ValueError, match="adapter has no attribute"):
        Runtime(object(), None, SpeculationConfig(mode="ar"))


def test_prompt_longer_than_context_fails_only_that_request() -> None:
    target, draft = pair()
    target.max_context = draft.max_context = 16
    with Runtime(target, draft, SpeculationConfig(mode="ssd", k=3)) as rt:
        a = rt.submit(list(range(12)) + [0, 1, 2, 3], RequestParams(max_new_tokens=4))
        b = rt.submit([1, 2], RequestParams(max_new_tokens=4))
        ua, ub = drain(rt, a)[1], drain(rt, b)
    assert ua.finish_reason == "error" and "does not fit the context" in ua.error
    assert ub[0] == greedy(target, [1, 2], 4)


def test_metrics_are_reported() -> None:
    target, draft = pair(noise=0.0)
    with Runtime(target, draft, SpeculationConfig(mode="ssd", k=3, backup="jit")) as rt:
        toks, u, _ = drain(rt, rt.submit([1, 2, 3], RequestParams(max_new_tokens=30)))
        m = rt.metrics()
    rm = u.metrics
    assert rm["generated_tokens"] == 30 and rm["rounds"] >= 1
    assert sum(rm["hits_per_position"]) == sum(rm["lookups_per_position"]) > 0  # identical draft: all hit
    assert rm["accepted_per_position"] == rm["proposed_per_position"]
    for key in ("round_s", "target_verify_s", "draft_tree_s", "draft_hidden_fraction", "time_to_first_token_s",
                "prefill_s", "backups_jit", "backups_fast", "fanout", "accepted_histogram", "mode"):
        assert key in m, key
    assert m["mode"] == "ssd" and 0.0 <= m["draft_hidden_fraction"] <= 1.0
