"""What quantized=None (the API's and the CLI's default) loads: a GGUF whose matrices the quantized
kernels run keeps its blocks on the CPU in bf16; another dtype, int8, another device, a Q4_1 file or a
float file is dequantized."""
from __future__ import annotations

import pytest
import torch

from conftest import make_hf
from gguf_writer import write_gguf

import saguaro
import saguaro.models as M
from saguaro.kernels import quant
from saguaro.models.loading import runs_quantized
from saguaro.models.quant_linear import QuantLinear
from saguaro.planned_defaults import PLANS

pytestmark = pytest.mark.skipif(not quant.available(), reason="the extension lacks the quantized kernels")
SIMD = quant.available() and quant.supported_isa() != "scalar"


@pytest.fixture(scope="module")
def ggufs(tmp_path_factory):
    d = tmp_path_factory.mktemp("qdefault")
    hf = make_hf("qwen2-untied")
    return {"kernels": write_gguf(hf, d / "q8.gguf", quant={"attn_v": "Q8_0", "*": "Q5_0"}),
            "q4_1": write_gguf(hf, d / "q41.gguf", quant="Q4_1"),
            "f32": write_gguf(hf, d / "f32.gguf")}


def _qkv(loaded) -> object:
    return loaded.adapter.model.layers[0].attention.qkv


@pytest.mark.skipif(not SIMD, reason="this CPU has only the scalar quantized path: the default dequantizes")
def test_the_default_keeps_kernel_blocks_only_where_they_are_the_asked_model(ggufs, tmp_path):
    k = ggufs["kernels"]
    assert runs_quantized(k) and runs_quantized(str(k))
    assert not runs_quantized(k, dtype=torch.float32)  # fp32 asks for fp32 weights
    assert not runs_quantized(k, int8="dynamic")
    assert not runs_quantized(k, device="meta")
    assert not runs_quantized(ggufs["q4_1"])  # a format the kernels lack
    assert not runs_quantized(ggufs["f32"])  # nothing quantized to keep
    assert not runs_quantized(tmp_path / "missing.gguf") and not runs_quantized("no-such-preset")
    assert isinstance(_qkv(M.load(k, quantized=None)), QuantLinear)
    assert M.load(k, quantized=None).quantized and not M.load(k).quantized  # load's own default stays False
    assert not isinstance(_qkv(M.load(ggufs["q4_1"], quantized=None)), QuantLinear)


@pytest.mark.skipif(not SIMD, reason="this CPU has only the scalar quantized path: the default dequantizes")
def test_engine_default_runs_the_blocks_and_quantized_false_converts(ggufs):
    """Engine() without quantized= keeps the GGUF's blocks for target and draft; an int8 draft and
    quantized=False are converted; greedy SD on the blocks equals AR on the blocks."""
    sp = saguaro.SamplingParams(max_new_tokens=10)
    prompt = [3, 17, 42, 5, 9]
    k = str(ggufs["kernels"])
    with saguaro.Engine(k, mode="ar") as ar:
        assert ar.target.quantized
        [want] = ar.generate(prompt, sp)
    with saguaro.Engine(k, k, mode="sd", k=2) as sd:
        assert sd.target.quantized and sd.draft.quantized
        [got] = sd.generate(prompt, sp)
    assert got.token_ids == want.token_ids
    with saguaro.Engine(k, k, mode="ssd", draft_int8="weight") as e:
        assert e.target.quantized and not e.draft.quantized
        assert (e.config.k, e.config.fanout_budget) == PLANS[("cpu", "int8")]
    with saguaro.Engine(k, k, mode="ssd") as e:  # the planner's shape for a draft on blocks
        assert (e.config.k, e.config.fanout_budget) == PLANS[("cpu", "quantized")]
    with saguaro.Engine(k, mode="ar", quantized=False) as e:
        assert not e.target.quantized and not isinstance(_qkv(e.target), QuantLinear)


@pytest.mark.slow
def test_real_presets_default_to_their_blocks_where_the_kernels_run_them():
    """The default pair's files (Q4_K/Q6_K, Q5_0/Q8_0/Q4_K/Q6_K) run quantized by default on a SIMD CPU;
    SmolLM2-135M's Q4_1 file is converted."""
    from saguaro.models.presets import PRESETS, preset_gguf

    try:
        for name in ("qwen2.5-coder-0.5b", "smollm2-135m"):
            preset_gguf(PRESETS[name])
    except ImportError as e:
        pytest.skip(str(e))
    assert runs_quantized("qwen2.5-coder-0.5b") == SIMD
    assert not runs_quantized("smollm2-135m")
