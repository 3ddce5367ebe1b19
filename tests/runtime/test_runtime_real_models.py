"""The runtime with real weights (fp32): greedy SSD equals autoregressive decoding.

SmolLM2-135M as its own draft accepts everything and hits the cache; a draft made of its first
layers only is mostly rejected and mostly misses: either way the output is the target's.
The Qwen2.5-Coder 1.5B/0.5B pair (slow) must also give exactly the autoregressive tokens.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from saguaro.speculation_config import SpeculationConfig
from saguaro.runtime import RequestParams, Runtime

M = pytest.importorskip("saguaro.models")

CODE_PROMPTS = [
    'def is_palindrome(s: str) -> bool:\n    """Return True if s reads the same backwards."""\n',
    'def fizzbuzz(n: int) -> list[str]:\n    """FizzBuzz from 1 to n."""\n',
    'def mean(xs: list[float]) -> float:\n    """Arithmetic mean of xs; 0.0 for an empty list."""\n',
    'def count_vowels(text: str) -> int:\n    """Number of vowels (aeiou, any case) in text."""\n',
]


def _smollm2():
    try:
        return M.load("smollm2-135m", dtype=torch.float32, max_context=512)
    except ImportError as e:  # the model package is not installed here
        pytest.skip(str(e))


def _generate(target, draft, config: SpeculationConfig, prompts: list[list[int]], n: int):
    with Runtime(target, draft, config) as rt:
        ids = [rt.submit(p, RequestParams(max_new_tokens=n)) for p in prompts]
        outs, metrics = [], []
        for rid in ids:
            u = rt.result(rid, timeout=1800)
            assert u.finish_reason in ("length", "stop"), (u.finish_reason, u.error)
            outs.append(u.new_tokens)
            metrics.append(u.metrics)
        return outs, metrics, rt.metrics()


def _truncated(model, layers: int):
    cfg = dataclasses.replace(model.config, num_layers=layers)
    return M.DecoderModel(cfg, model.embed, model.layers[:layers], model.final_norm, model.head, model.dtype,
                          model.device)


def test_smollm2_ssd_equals_ar_with_self_draft_and_truncated_draft() -> None:
    lm = _smollm2()
    model = lm.adapter.model
    prompts = [lm.tokenizer.encode(p) for p in CODE_PROMPTS[:2]]
    n = 24
    ar, _, _ = _generate(lm.adapter, None, SpeculationConfig(mode="ar"), prompts, n)

    self_draft = M.NativeModelAdapter(model, max_context=512)
    ssd, per_request, agg = _generate(lm.adapter, self_draft, SpeculationConfig(mode="ssd", k=3, backup="jit"),
                                      prompts, n)
    assert ssd == ar
    proposed, accepted = sum(agg["proposed_per_position"]), sum(agg["accepted_per_position"])
    lookups, hits = sum(agg["lookups_per_position"]), sum(agg["hits_per_position"])
    print(f"self-draft: acceptance {accepted}/{proposed}, cache hits {hits}/{lookups}")
    assert proposed > 0 and accepted == proposed
    assert lookups > 0 and hits == lookups

    shallow = M.NativeModelAdapter(_truncated(model, 2), max_context=512)
    ssd2, _, agg2 = _generate(lm.adapter, shallow, SpeculationConfig(mode="ssd", k=3, backup="jit"), prompts, n)
    assert ssd2 == ar
    proposed, accepted = sum(agg2["proposed_per_position"]), sum(agg2["accepted_per_position"])
    print(f"2-layer draft: acceptance {accepted}/{proposed}")
    assert proposed > 0 and accepted < 0.5 * proposed


@pytest.mark.slow
def test_qwen_pair_ssd_equals_ar_on_code_prompts() -> None:
    try:
        target = M.load("qwen2.5-coder-1.5b", dtype=torch.float32, max_context=512)
        draft = M.load("qwen2.5-coder-0.5b", dtype=torch.float32, max_context=512)
    except ImportError as e:
        pytest.skip(str(e))
    prompts = [target.tokenizer.encode(p) for p in CODE_PROMPTS]
    n = 64
    ar, _, _ = _generate(target.adapter, None, SpeculationConfig(mode="ar"), prompts, n)
    ssd, _, agg = _generate(target.adapter, draft.adapter, SpeculationConfig(mode="ssd", k=4, backup="jit"), prompts, n)
    print(f"qwen ssd: rounds {agg['batched_rounds']}, acceptance "
          f"{sum(agg['accepted_per_position'])}/{sum(agg['proposed_per_position'])}, hits "
          f"{sum(agg['hits_per_position'])}/{sum(agg['lookups_per_position'])}, hidden {agg['draft_hidden_fraction']:.2f}")
    assert ssd == ar


def _bf16_kernel_or_skip() -> None:
    from saguaro.kernels.small_gemm import available

    if not available():
        pytest.skip("bf16 exactness needs the batch-invariant bf16 kernel (AVX2+FMA CPUs)")


def test_smollm2_bf16_sd_and_ssd_equal_ar_token_for_token() -> None:
    """bf16 too: every linear is batch-invariant and attention runs row by row, so a verification
    forward gives each row the bits of a one-token decode, whatever the batch holds."""
    _bf16_kernel_or_skip()
    try:
        lm = M.load("smollm2-135m", dtype=torch.bfloat16, max_context=512)
    except ImportError as e:
        pytest.skip(str(e))
    model = lm.adapter.model
    prompts = [lm.tokenizer.encode(p) for p in CODE_PROMPTS[:3]]
    n = 32
    ar = [_generate(lm.adapter, None, SpeculationConfig(mode="ar"), [p], n)[0][0] for p in prompts]
    shallow = M.NativeModelAdapter(_truncated(model, 20), max_context=512)
    for mode in ("sd", "ssd"):
        out, _, agg = _generate(lm.adapter, shallow, SpeculationConfig(mode=mode, k=3, backup="jit"), prompts, n)
        accepted, proposed = sum(agg["accepted_per_position"]), sum(agg["proposed_per_position"])
        print(f"bf16 {mode}: acceptance {accepted}/{proposed}")
        assert 0 < accepted < proposed  # some rows accepted, some rejected: both paths were exercised
        assert out == ar


@pytest.mark.slow
def test_qwen_pair_bf16_ssd_equals_ar() -> None:
    _bf16_kernel_or_skip()
    try:
        target = M.load("qwen2.5-coder-1.5b", dtype=torch.bfloat16, max_context=512)
        draft = M.load("qwen2.5-coder-0.5b", dtype=torch.bfloat16, max_context=512)
    except ImportError as e:
        pytest.skip(str(e))
    prompts = [target.tokenizer.encode(p) for p in CODE_PROMPTS[:2]]
    n = 48
    ar = [_generate(target.adapter, None, SpeculationConfig(mode="ar"), [p], n)[0][0] for p in prompts]
    ssd, _, agg = _generate(target.adapter, draft.adapter, SpeculationConfig(mode="ssd", k=3, backup="jit"), prompts, n)
    print(f"qwen bf16 ssd: acceptance {sum(agg['accepted_per_position'])}/{sum(agg['proposed_per_position'])}")
    assert ssd == ar


def test_smollm2_bf16_pruned_draft_vocabulary_keeps_the_output() -> None:
    """A real draft scoring only ids < 2048 (+ special and prompt tokens): cheaper forwards, more
    rejections (a target token outside the kept ids is never proposed), the same tokens."""
    _bf16_kernel_or_skip()
    try:
        lm = M.load("smollm2-135m", dtype=torch.bfloat16, max_context=512)
        draft = M.load("smollm2-135m", dtype=torch.bfloat16, max_context=512, draft_vocab=2048)
    except ImportError as e:
        pytest.skip(str(e))
    prompts = [lm.tokenizer.encode(p) for p in CODE_PROMPTS[:3]]
    n = 32
    ar = [_generate(lm.adapter, None, SpeculationConfig(mode="ar"), [p], n)[0][0] for p in prompts]
    outside = sum(1 for toks, p in zip(ar, prompts) for t in toks if t >= 2048 and t not in p)
    assert outside > 0  # the pruning really removes tokens the target produces
    _assert_sd_and_ssd_give(ar, lm, draft, prompts, n, "bf16 pruned-draft")


def _assert_sd_and_ssd_give(ar: list, lm, draft, prompts: list, n: int, label: str) -> None:
    """SD and SSD with a changed draft: some drafts accepted, some rejected, and the AR tokens exactly."""
    for mode in ("sd", "ssd"):
        out, _, agg = _generate(lm.adapter, draft.adapter, SpeculationConfig(mode=mode, k=3, backup="jit"), prompts, n)
        accepted, proposed = sum(agg["accepted_per_position"]), sum(agg["proposed_per_position"])
        print(f"{label} {mode}: acceptance {accepted}/{proposed}")
        assert 0 < accepted < proposed
        assert out == ar


def test_smollm2_int8_dynamic_draft_keeps_the_output() -> None:
    """A real draft with int8 weights and activations (and a pruned vocabulary on top): a different q,
    so different acceptance, and the target's tokens exactly."""
    _bf16_kernel_or_skip()
    try:
        lm = M.load("smollm2-135m", dtype=torch.bfloat16, max_context=512)
        draft = M.load("smollm2-135m", dtype=torch.bfloat16, max_context=512, int8="dynamic", draft_vocab=4096)
    except ImportError as e:
        pytest.skip(str(e))
    prompts = [lm.tokenizer.encode(p) for p in CODE_PROMPTS[:3]]
    n = 32
    ar = [_generate(lm.adapter, None, SpeculationConfig(mode="ar"), [p], n)[0][0] for p in prompts]
    _assert_sd_and_ssd_give(ar, lm, draft, prompts, n, "int8-dynamic draft")
