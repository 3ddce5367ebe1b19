"""Sampling exactness end to end: the runtime's output distribution is the target's.

A tiny model (V = 5) lets us enumerate the exact distribution of a request's 4 generated tokens
(5^4 = 625 sequences) from the target's processed conditionals. SD and SSD (jit and fast backups,
Saguaro C < 1, top-k/top-p) are sampled over 50,000 requests (distinct seeds/streams) and compared
with a chi-square test; cells with expected count < 5 are pooled. The test fails when the statistic
exceeds the chi-square quantile at p = 1e-4 (Wilson-Hilferty approximation), so a correct runtime
fails about once in 10,000 runs per configuration. A planted bias (the verifier reading q instead
of the q~ the drafts were sampled from) must be detected by the same test.
"""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from saguaro.speculation_config import SpeculationConfig
from saguaro.kernels import reference
from saguaro.runtime import RequestParams, Runtime

from tiny_adapter import TinyAdapter

V = 5
PROMPT = [1, 3]
NEW = 4
SAMPLES = 50_000
CHUNK = 5_000
Z_1E4 = 3.7190  # standard normal quantile at 1 - 1e-4


class PrunedDraft:
    """A draft that scores only some ids (logit -inf, q = 0, elsewhere), as a pruned draft vocabulary
    does: the runtime must still give the target's distribution (the residual covers the rest)."""

    def __init__(self, draft: TinyAdapter, keep: list[int]) -> None:
        self._draft = draft
        self._drop = torch.ones(V, dtype=torch.bool)
        self._drop[keep] = False

    def __getattr__(self, name: str):
        return getattr(self._draft, name)

    def _mask(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.masked_fill(self._drop, float("-inf"))

    def prefill(self, *a):
        return self._mask(self._draft.prefill(*a))

    def extend(self, *a):
        return self._mask(self._draft.extend(*a))

    def tree_step(self, *a):
        return self._mask(self._draft.tree_step(*a))


def models(pruned: bool = False) -> tuple[TinyAdapter, TinyAdapter]:
    target = TinyAdapter(vocab_size=V, seed=7, scale=1.5)
    draft = TinyAdapter(vocab_size=V, like=target, noise=0.8, noise_seed=3)
    return target, (PrunedDraft(draft, [0, 2, 3]) if pruned else draft)


def exact_distribution(target: TinyAdapter, p: RequestParams) -> dict[tuple[int, ...], float]:
    """P(x1..x4) = product of the target's processed conditionals."""
    out: dict[tuple[int, ...], float] = {}

    def cond(ctx: list[int]) -> torch.Tensor:
        logits = target.logits_after([ctx])
        return reference.process_probs(logits, temperature=p.temperature, top_k=p.top_k, top_p=p.top_p)[0].double()

    def walk(prefix: tuple[int, ...], prob: float) -> None:
        if len(prefix) == NEW:
            out[prefix] = prob
            return
        q = cond(PROMPT + list(prefix))
        for t in range(V):
            if q[t] > 0:
                walk(prefix + (t,), prob * float(q[t]))

    walk((), 1.0)
    return out


def sample(config: SpeculationConfig, p: RequestParams, plant: bool = False,
           pruned: bool = False) -> tuple[dict, dict]:
    target, draft = models(pruned)
    counts: dict[tuple[int, ...], int] = {}
    with Runtime(target, draft, config, _test_plant_unadjusted_q=plant) as rt:
        for start in range(0, SAMPLES, CHUNK):
            ids = []
            for i in range(start, start + CHUNK):
                rp = RequestParams(temperature=p.temperature, top_k=p.top_k, top_p=p.top_p, max_new_tokens=NEW,
                                   seed=1_000_003 * i + 17, stream=i)
                ids.append(rt.submit(PROMPT, rp))
            for rid in ids:
                u = rt.result(rid, timeout=600)
                assert u.finish_reason == "length", u
                key = tuple(u.new_tokens)
                counts[key] = counts.get(key, 0) + 1
        metrics = rt.metrics()
    return counts, metrics


def chi_square(counts: dict, exact: dict, n: int) -> tuple[float, int]:
    assert set(counts) <= set(exact), f"impossible continuations sampled: {set(counts) - set(exact)}"
    stat, df, pooled_obs, pooled_exp = 0.0, 0, 0, 0.0
    for key, prob in exact.items():
        e = prob * n
        o = counts.get(key, 0)
        if e < 5:
            pooled_obs += o
            pooled_exp += e
            continue
        stat += (o - e) ** 2 / e
        df += 1
    if pooled_exp > 0:
        stat += (pooled_obs - pooled_exp) ** 2 / pooled_exp
        df += 1
    return stat, df - 1


def threshold(df: int) -> float:
    """Chi-square quantile at 1 - 1e-4 (Wilson-Hilferty)."""
    a = 2.0 / (9.0 * df)
    return df * (1 - a + Z_1E4 * math.sqrt(a)) ** 3


CASES = {
    "sd": (SpeculationConfig(mode="sd", k=2), RequestParams(temperature=1.0)),
    "ssd-jit": (SpeculationConfig(mode="ssd", k=2, backup="jit", fanout_budget=3), RequestParams(temperature=1.0)),
    "ssd-fast": (SpeculationConfig(mode="ssd", k=2, backup="fast", fanout_budget=3), RequestParams(temperature=0.8)),
    "ssd-saguaro-topk-topp": (SpeculationConfig(mode="ssd", k=2, backup="jit", fanout_budget=3, saguaro_c=0.3),
                              RequestParams(temperature=1.0, top_k=4, top_p=0.9)),
    # a pruned draft vocabulary: q = 0 on ids 1 and 4, which the target must still produce
    "sd-pruned-draft": (SpeculationConfig(mode="sd", k=2), RequestParams(temperature=1.0)),
    "ssd-pruned-draft": (SpeculationConfig(mode="ssd", k=2, backup="jit", fanout_budget=3, saguaro_c=0.5),
                         RequestParams(temperature=0.9, top_k=4)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_output_distribution_is_the_targets(case: str) -> None:
    config, p = CASES[case]
    target, _ = models()
    exact = exact_distribution(target, p)
    counts, metrics = sample(config, p, pruned=case.endswith("pruned-draft"))
    stat, df = chi_square(counts, exact, SAMPLES)
    print(f"{case}: chi-square {stat:.1f}, {df} dof, threshold {threshold(df):.1f}")
    assert stat < threshold(df), f"{case}: chi-square {stat:.1f} with {df} dof exceeds {threshold(df):.1f}"
    if config.mode == "ssd":
        # the cache really served speculations, or the test says nothing about SSD
        assert metrics["speculations_from_cache"] > SAMPLES // 20, metrics
        if config.backup == "fast":
            assert metrics["backups_fast"] > 0


def test_planted_bias_is_detected() -> None:
    """Verifying with q instead of q~ (C = 0.3) biases the output: the same test must catch it."""
    config = SpeculationConfig(mode="ssd", k=2, backup="jit", fanout_budget=3, saguaro_c=0.3)
    p = RequestParams(temperature=1.0)
    target, _ = models()
    exact = exact_distribution(target, p)
    counts, _ = sample(config, p, plant=True)
    stat, df = chi_square(counts, exact, SAMPLES)
    print(f"planted bias: chi-square {stat:.1f}, {df} dof, threshold {threshold(df):.1f}")
    assert stat > threshold(df), f"planted bias not detected: chi-square {stat:.1f} <= {threshold(df):.1f}"
