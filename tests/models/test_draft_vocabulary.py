"""Draft vocabulary pruning: the pruned head scores exactly what the full head scores at the kept ids
(-inf elsewhere), follows the live prompts, and leaves SD/SSD output equal to the target's."""
from __future__ import annotations

import pytest
import torch

from conftest import make_hf, native_from_hf

from saguaro.kernels.small_gemm import available as bf16_kernel_available
from saguaro.models.draft_vocabulary import kept_ids

V = 97


def _rand(n: int, seed: int, high: int = V) -> list[int]:
    return torch.randint(0, high, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def _pair(dtype: torch.dtype, family: str = "qwen2-tied"):
    hf = make_hf(family)
    return native_from_hf(hf, dtype=dtype), native_from_hf(hf, dtype=dtype)


def _check_rows(got: torch.Tensor, ref: torch.Tensor, keep: torch.Tensor, exact: bool) -> None:
    mask = torch.zeros(V, dtype=torch.bool)
    mask[keep] = True
    assert torch.isneginf(got[:, ~mask]).all()
    if exact:
        assert torch.equal(got[:, mask], ref[:, mask])
    else:
        assert (got[:, mask] - ref[:, mask]).abs().max().item() <= 1e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("family", ["qwen2-tied", "qwen2-untied"])
@pytest.mark.parametrize("kept", [20, [2, 3, 5, 8, 13]])  # the lowest ids (a 0..n-1 run first) or not
def test_pruned_logits_equal_full_logits_at_kept_ids(dtype, family, kept):
    if dtype == torch.bfloat16 and not bf16_kernel_available():
        pytest.skip("bit-identity needs saguaro's bf16 kernel (AVX2+FMA)")
    full, pruned = _pair(dtype, family)
    pruned.restrict_vocabulary(kept, always=[90], with_prompts=False)
    ids = list(range(kept)) if isinstance(kept, int) else kept
    keep = torch.tensor(ids + [90] + [e for e in pruned.eos_token_ids if e not in ids])
    prompt = _rand(12, 1)
    exact = dtype == torch.bfloat16
    _check_rows(pruned.prefill([1], [prompt]), full.prefill([1], [prompt]), keep, exact)
    chain = [3, 7, 11]
    _check_rows(pruned.extend([1], [chain]), full.extend([1], [chain]), keep, exact)
    for d in range(2):
        toks = [4 + d, 9 + d, 15 + d]
        _check_rows(pruned.tree_step([1, 1, 1], [13, 14, 15], toks, d),
                    full.tree_step([1, 1, 1], [13, 14, 15], toks, d), keep, exact)


def test_prompt_tokens_are_scored_while_the_sequence_lives():
    _, pruned = _pair(torch.float32)
    pruned.restrict_vocabulary(10)
    vocab = pruned.draft_vocabulary
    assert vocab is not None
    pruned.prefill([1], [[50, 60, 3]])
    pruned.prefill([2], [[70, 3]])
    ids = set(vocab.ids.tolist())
    assert {50, 60, 70} <= ids and 80 not in ids
    out = pruned.extend([1], [[4]])
    assert torch.isfinite(out[0, [50, 60, 70]]).all() and torch.isneginf(out[0, 80])
    pruned.release(1)
    ids = set(vocab.ids.tolist())
    assert 70 in ids and not ({50, 60} & ids)
    pruned.restrict_vocabulary(None)
    assert pruned.draft_vocabulary is None
    assert torch.isfinite(pruned.extend([2], [[5]])).all()


def test_restricting_later_keeps_the_live_prompts():
    _, pruned = _pair(torch.float32)
    pruned.prefill([1], [[50, 3]])
    pruned.restrict_vocabulary([1, 2])
    assert 50 in set(pruned.draft_vocabulary.ids.tolist())


@pytest.mark.parametrize("keep, match", [
    (0, r"\[1, 97\]"), (98, r"\[1, 97\]"), (True, "number of ids"), ([], "no token ids"),
    ([1, 200], "outside the vocabulary"), ("abc", "outside the vocabulary|number of ids"),
])
def test_bad_draft_vocab_is_a_clear_error(keep, match):
    with pytest.raises(ValueError, match=match):
        kept_ids(V, keep)


@pytest.mark.parametrize("int8", ["weight", "dynamic"])
def test_int8_drafts_prune_to_their_own_rows(int8):
    """An int8 head prunes to the same int8 rows: the kept logits are the full int8 head's, bit for bit."""
    from saguaro.models.config import ModelConfig
    from saguaro.models.decoder import DecoderModel
    from saguaro.models.native_adapter import NativeModelAdapter

    hf = make_hf("qwen2-tied")
    config = ModelConfig.from_hf_dict(hf.config.to_dict())
    full, pruned = (NativeModelAdapter(DecoderModel.from_state_dict(config, dict(hf.state_dict()),
                                                                    dtype=torch.bfloat16, int8=int8)) for _ in range(2))
    pruned.restrict_vocabulary(20, with_prompts=False)
    keep = torch.tensor(sorted(set(range(20)) | set(pruned.eos_token_ids)))
    prompt = _rand(12, 2)
    _check_rows(pruned.prefill([1], [prompt]), full.prefill([1], [prompt]), keep, exact=True)
    _check_rows(pruned.tree_step([1, 1], [12, 12], [4, 9], 0), full.tree_step([1, 1], [12, 12], [4, 9], 0),
                keep, exact=True)


def test_non_native_draft_is_a_clear_error():
    from saguaro import models

    loaded = models.load(lambda tokens: torch.zeros(*tokens.shape, V), name="fn")
    with pytest.raises(ValueError, match="native saguaro draft"):
        models.restrict_draft_vocabulary(loaded, 10)


@pytest.mark.parametrize("mode", ["sd", "ssd"])
def test_greedy_output_with_a_pruned_draft_is_the_targets(mode):
    """The draft scores a third of the vocabulary, so it is often rejected; the output must not change."""
    from saguaro.runtime import RequestParams
    from saguaro.speculation_config import SpeculationConfig
    from saguaro.runtime import Runtime

    hf = make_hf("qwen2-untied")
    target, draft = native_from_hf(hf), native_from_hf(make_hf("qwen2-untied", seed=0))
    draft.restrict_vocabulary(32, with_prompts=True)
    prompts = [_rand(9, 5), _rand(7, 6)]
    outs = {}
    for m, d in (("ar", None), (mode, draft)):
        with Runtime(target, d, SpeculationConfig(mode=m, k=3, backup="jit")) as rt:
            ids = [rt.submit(p, RequestParams(max_new_tokens=24)) for p in prompts]
            res = [rt.result(rid, timeout=120).new_tokens for rid in ids]
            outs[m] = (res, rt.metrics())
    assert outs[mode][0] == outs["ar"][0]
    agg = outs[mode][1]
    accepted, proposed = sum(agg["accepted_per_position"]), sum(agg["proposed_per_position"])
    assert 0 < accepted < proposed, (accepted, proposed)


def test_engine_draft_vocab_keeps_the_output_and_rejects_a_non_native_draft():
    import saguaro
    from saguaro.models.config import ModelConfig
    from saguaro.models.decoder import DecoderModel

    hf = make_hf("qwen2-tied")
    config = ModelConfig.from_hf_dict(hf.config.to_dict())

    def native() -> DecoderModel:
        return DecoderModel.from_state_dict(config, dict(hf.state_dict()), dtype=torch.float32)

    sp = saguaro.SamplingParams(max_new_tokens=16, ignore_eos=True)
    prompt = _rand(8, 3)
    with saguaro.Engine(target=native(), mode="ar", dtype=torch.float32) as ar:
        want = ar.generate([prompt], sp)[0].token_ids
    with saguaro.Engine(target=native(), draft=native(), mode="sd", k=3, dtype=torch.float32,
                        draft_vocab=24) as sd:
        assert sd.draft.adapter.draft_vocabulary is not None
        assert sd.target.adapter.draft_vocabulary is None  # the target always scores every id
        assert sd.generate([prompt], sp)[0].token_ids == want
    with pytest.raises(ValueError, match="native saguaro draft"):
        saguaro.Engine(target=native(), draft=lambda t: torch.zeros(*t.shape, V), mode="sd", dtype=torch.float32,
                       draft_vocab=24)
