"""Trace replay (saguaro.benchmark.trace_replay): traces, the draft's ramp, the target's forced
outcomes, and the runtime realising a trace exactly on tiny random native models."""
from __future__ import annotations

import pytest
import torch

import saguaro
import saguaro.kernels as K
from saguaro.benchmark.speed_model import accepted_distribution
from saguaro.benchmark.trace_replay import (ReplayDraft, ReplayTarget, ReplayTrace, TokenRamp, check_realised,
                                            random_decoder)
from saguaro.models.config import ModelConfig
from saguaro.models.native_adapter import NativeModelAdapter

V = 128
PROMPT = list(range(3, 22))


def _config(layers: int, hidden: int) -> ModelConfig:
    return ModelConfig(architecture="qwen2", vocab_size=V, hidden_size=hidden, intermediate_size=2 * hidden,
                       num_layers=layers, num_heads=4, num_kv_heads=2, head_dim=hidden // 4,
                       max_position_embeddings=512, tie_word_embeddings=True, attention_bias=True)


def _adapters() -> tuple[NativeModelAdapter, NativeModelAdapter]:
    target = random_decoder(_config(2, 64), dtype=torch.float32, seed=0)
    draft = random_decoder(_config(1, 32), dtype=torch.float32, seed=1)
    return NativeModelAdapter(target, max_context=512), NativeModelAdapter(draft, max_context=512)


def _run(trace: ReplayTrace, mode: str, *, k: int = 4, fanout=8, tokens: int = 100, target_cls=ReplayTarget):
    ta, da = _adapters()
    draft = ReplayDraft(da)
    target = target_cls(ta, trace, draft)
    with saguaro.Engine(target=target.loaded("target"), draft=draft.loaded("draft"), mode=mode, k=k,
                        fanout=fanout, backup="jit") as engine:
        engine.generate([PROMPT], saguaro.SamplingParams(max_new_tokens=tokens, ignore_eos=True))
        metrics = engine.metrics()
    return metrics, target


# ------------------------------------------------------------------------------------------ traces
def test_generated_trace_has_the_stated_shares_exactly() -> None:
    trace = ReplayTrace.generate(0.7, 0.6, 4, rounds=1000, seed=3)
    want = [round(p * 1000) for p in accepted_distribution(0.7, 4)]
    assert all(abs(h - w) <= 1 for h, w in zip(trace.histogram, want))
    assert sum(trace.histogram) == 1000
    assert abs(trace.hit_rate - 0.6) <= 0.005
    assert abs(trace.acceptance - 0.7) < 0.01
    assert "a=0.7" in trace.source and "seed=3" in trace.source
    # seeded: same seed same order, another seed another order, same counts
    assert ReplayTrace.generate(0.7, 0.6, 4, rounds=1000, seed=3) == trace
    other = ReplayTrace.generate(0.7, 0.6, 4, rounds=1000, seed=4)
    assert other.accepted != trace.accepted and other.histogram == trace.histogram


def test_iid_trace_is_near_the_stated_rates() -> None:
    trace = ReplayTrace.generate(0.8, 0.9, 3, rounds=4000, seed=0, iid=True)
    assert abs(trace.acceptance - 0.8) < 0.03
    assert abs(trace.hit_rate - 0.9) < 0.03


def test_trace_from_metrics_keeps_the_recorded_histogram_and_per_position_hits() -> None:
    metrics = {"accepted_histogram": [10, 20, 30], "lookups_per_position": [10, 20, 30],
               "hits_per_position": [5, 20, 0]}
    trace = ReplayTrace.from_metrics(metrics, rounds=60, seed=1)
    assert trace.histogram == [10, 20, 30]
    per = {j: [h for a, h in zip(trace.accepted, trace.hits) if a == j] for j in range(3)}
    assert sum(per[0]) == 5 and all(per[1]) and not any(per[2])
    assert trace.source.startswith("recorded")
    assert ReplayTrace.from_dict(trace.to_dict()) == trace


def test_trace_validation() -> None:
    with pytest.raises(ValueError):
        ReplayTrace(2, (0, 3), (True, False))
    with pytest.raises(ValueError):
        ReplayTrace.generate(0.5, 1.5, 2)
    with pytest.raises(ValueError):
        ReplayTrace.generate(0.5, [0.5, 0.5], 2)
    with pytest.raises(ValueError):
        TokenRamp(8, 7)


# ------------------------------------------------------------------------------------------ the wrappers
def test_draft_ramp_sets_the_top_tokens_and_the_fanout_candidates() -> None:
    _, da = _adapters()
    draft = ReplayDraft(da, ramp=8)
    logits = draft.prefill([0], [PROMPT])
    x = [5, 9, 2]
    trunk = draft.extend([0], [x])  # positions 19..21, predicting 20..22
    g = draft.ramp
    assert logits[0].topk(8).indices.tolist() == [g.token(len(PROMPT), r) for r in range(8)]
    for i in range(3):
        assert trunk[i].topk(8).indices.tolist() == [g.token(len(PROMPT) + 1 + i, r) for r in range(8)]
    # the fork at each position takes the first F ramp tokens other than the drafted one
    drafted = torch.tensor([[g.token(20, 0), g.token(21, 0)]], dtype=torch.int32)
    cands = K.fanout_candidates(trunk[None].contiguous(), drafted, [2, 2, 2])
    assert cands[0].tolist() == [[g.token(20, 1), g.token(20, 2)], [g.token(21, 1), g.token(21, 2)],
                                 [g.token(22, 0), g.token(22, 1)]]
    tree = draft.tree_step([0, 0], [20, 21], [7, 8], 0)
    assert tree[0].argmax().item() == g.token(21, 0) and tree[1].argmax().item() == g.token(22, 0)


@pytest.mark.parametrize("k, hit", [(0, True), (2, True), (2, False), (4, True), (4, False)])
def test_target_forces_the_trace_outcome_for_greedy_verification(k: int, hit: bool) -> None:
    ta, da = _adapters()
    draft = ReplayDraft(da, ramp=8)
    target = ReplayTarget(ta, ReplayTrace.constant(4, k, hit), draft)
    draft.prefill([0], [PROMPT])
    target.prefill([0], [PROMPT])
    g = draft.ramp
    base = len(PROMPT)  # r sits here
    xs = [g.token(base + 1 + i, 0) for i in range(4)]
    trunk = draft.extend([0], [[1] + xs])
    logits = target.extend([0], [[1] + xs])
    accepted, bonus = K.verify_chain(logits[None].contiguous(), torch.tensor([xs], dtype=torch.int32), None,
                                     temperature=0.0)
    assert int(accepted[0]) == k
    cands = K.fanout_candidates(trunk[None].contiguous(), torch.tensor([xs], dtype=torch.int32), [3] * 5)[0]
    assert (int(bonus[0]) in cands[k].tolist()) == hit
    assert target.log[0].accepted == k and target.log[0].bonus == int(bonus[0])


# ------------------------------------------------------------------------------------------ the runtime realises it
@pytest.mark.parametrize("mode", ["sd", "ssd"])
def test_constant_k2_measures_exactly_two_accepted_every_round(mode: str) -> None:
    metrics, target = _run(ReplayTrace.constant(4, 2, True), mode)
    hist = metrics["accepted_histogram"]
    s = target.summary()
    assert hist[2] == metrics["rounds"] - s["clipped"] - s["plain_rounds"] and sum(hist) == metrics["rounds"]
    assert s["clipped"] + s["plain_rounds"] <= 2  # only the last, shortened speculations hold fewer than 2 drafts
    assert check_realised(metrics, target) == []


@pytest.mark.parametrize("hit", [True, False])
def test_ssd_forced_hits_and_misses(hit: bool) -> None:
    metrics, target = _run(ReplayTrace.constant(4, 1, hit), "ssd")
    assert sum(metrics["lookups_per_position"]) >= metrics["rounds"] - 2
    assert metrics["cache_hit_rate"] == (1.0 if hit else 0.0)
    assert check_realised(metrics, target) == []


def test_ssd_realises_a_generated_trace_exactly() -> None:
    trace = ReplayTrace.generate(0.7, 0.6, 4, rounds=64, seed=1)
    metrics, target = _run(trace, "ssd", tokens=120)
    assert check_realised(metrics, target, metrics["fanout"]) == []
    s = target.summary(lookups=sum(metrics["lookups_per_position"]))
    assert sum(metrics["hits_per_position"]) == s["hits_expected"] > 0
    assert [r.trace_k for r in target.log] == list(trace.accepted[:len(target.log)])
    assert all(r.accepted == r.trace_k for r in target.log if not r.clipped)


def test_fanout_zero_positions_are_counted_as_impossible_hits() -> None:
    # a manual fan-out with no branch after 1 accepted: hits there cannot be realised, and are counted
    fanout = [1, 0, 1, 1, 1]
    metrics, target = _run(ReplayTrace.constant(4, 1, True), "ssd", fanout=fanout)
    s = target.summary(fanout=fanout, lookups=sum(metrics["lookups_per_position"]))
    assert s["impossible_hits"] == sum(metrics["lookups_per_position"]) and s["hits_expected"] == 0
    assert metrics["cache_hit_rate"] == 0.0
    assert check_realised(metrics, target, fanout) == []


class _WrongBonus(ReplayTarget):
    """Planted: on a hit, picks the ramp token one past the first candidate the fork takes (a miss when F = 1)."""

    def _outcome(self, seq, base, t):
        rec = super()._outcome(seq, base, t)
        if rec.hit:
            p = base + rec.accepted + 1
            rec.bonus = self.ramp.first_other(p, (self.ramp.length,), None)
        return rec


class _AcceptsOneMore(ReplayTarget):
    """Planted: forces the next drafted token at the rejection row (one more accepted than recorded)."""

    def _outcome(self, seq, base, t):
        rec = super()._outcome(seq, base, t)
        if rec.accepted < rec.drafts:
            rec.bonus = t[rec.accepted + 1]
        return rec


@pytest.mark.parametrize("planted", [_WrongBonus, _AcceptsOneMore])
def test_a_planted_wrong_replay_is_caught(planted) -> None:
    metrics, target = _run(ReplayTrace.constant(4, 1, True), "ssd", target_cls=planted)
    assert check_realised(metrics, target) != []
