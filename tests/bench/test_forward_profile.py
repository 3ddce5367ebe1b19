"""bench/forward_profile.py: decode vs extend and vs a tree step, on a tiny random bf16 model."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from saguaro.models.config import ModelConfig  # noqa: E402
from saguaro.models.decoder import DecoderModel  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("bench_forward_profile", ROOT / "bench" / "forward_profile.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _tiny() -> DecoderModel:
    cfg = transformers.Qwen2Config(vocab_size=1100, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    torch.manual_seed(0)
    hf = transformers.Qwen2ForCausalLM(cfg).eval()
    return DecoderModel.from_state_dict(ModelConfig.from_hf_dict(cfg.to_dict()), dict(hf.state_dict()),
                                        dtype=torch.bfloat16)


@pytest.mark.parametrize("tree", [False, True])
def test_profile_splits_the_forward_and_writes_its_page(tree, tmp_path):
    fp = _module()
    res = fp.profile(_tiny(), 8, 2, tree=tree)
    for n in ("1", "8"):
        ms = res["median_ms"][n]
        assert ms["total"] > 0 and ms["projections"] > 0
        parts = sum(ms[c] for c in (*fp.COMPONENTS, "other"))
        assert parts == pytest.approx(ms["total"])  # the components and the rest add up to the forward
    assert res["tree"] is tree
    res["machine"], res["notes"], res["model"] = {"cpu": "x", "cpu_capability": "y", "torch": "z"}, [], "tiny"
    page = fp.write(res, tmp_path).read_text()
    assert ("tree 8 ms" if tree else "extend 8 ms") in page
    assert (tmp_path / ("forward-profile-tiny" + ("-tree8" if tree else "") + ".md")).exists()


def test_result_names():
    fp = _module()
    assert fp.stem("m", 5, "none", False) == "forward-profile-m"
    assert fp.stem("m", 16, "dynamic", True) == "forward-profile-m-int8dyn-tree16"
    assert fp.stem("m", 16, "dynamic", True, 32768) == "forward-profile-m-int8dyn-vocab32768-tree16"
    assert fp.stem("m", 5, "none", False, None, True, 2, "icelake") == "forward-profile-m-quantized-2t-icelake"


def test_instrumentation_is_undone():
    fp = _module()
    from saguaro.models import attention, linear, norm

    before = (linear.Linear.__dict__["_small"], norm.RMSNorm.__dict__["__call__"], attention.apply_rotary)
    fp.profile(_tiny(), 3, 1)
    assert (linear.Linear.__dict__["_small"], norm.RMSNorm.__dict__["__call__"], attention.apply_rotary) == before


def test_pruned_vocabulary_profiles_its_own_head():
    fp = _module()
    full = fp.profile(_tiny(), 4, 1, tree=True)
    pruned = fp.profile(_tiny(), 4, 1, tree=True, draft_vocab=512)
    # 512 lowest ids + the 64 prompt tokens (ids 1000-1063) instead of 1100 rows of 64 columns
    assert full["qkv+o+mlp+head (multiply-adds per row)"] - pruned["qkv+o+mlp+head (multiply-adds per row)"] == \
        (1100 - 512 - 64) * 64
