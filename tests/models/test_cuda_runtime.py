"""SSD end to end on a CUDA device: native target and draft on the GPU, greedy AR == SD == SSD (fp32)."""
from __future__ import annotations

import pytest
import torch

from conftest import make_hf
from saguaro.speculation_config import SpeculationConfig
from saguaro.models import DecoderModel, ModelConfig, NativeModelAdapter
from saguaro.runtime import RequestParams, Runtime

pytestmark = pytest.mark.gpu

PROMPTS = [list(range(3, 20)), [5, 6, 7], list(range(40, 10, -1))]


def adapter(family: str, seed: int) -> NativeModelAdapter:
    hf = make_hf(family, seed=seed)
    config = ModelConfig.from_hf_dict(hf.config.to_dict())
    model = DecoderModel.from_state_dict(config, dict(hf.state_dict()), dtype=torch.float32, device="cuda")
    return NativeModelAdapter(model)


def generate(mode: str, target: NativeModelAdapter, draft: NativeModelAdapter) -> list[list[int]]:
    cfg = SpeculationConfig(mode=mode, k=3, backup="jit")
    out = []
    with Runtime(target, draft, cfg) as rt:
        ids = [rt.submit(p, RequestParams(max_new_tokens=24)) for p in PROMPTS]
        for i in ids:
            u = rt.result(i, timeout=600)
            assert u.finish_reason == "length", u.finish_reason
            out.append(u.new_tokens)
    return out


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none is visible)")
def test_cuda_ssd_matches_autoregressive():
    target, draft = adapter("qwen2-tied", 0), adapter("qwen2-tied", 1)
    ar = generate("ar", target, draft)
    assert all(len(t) == 24 for t in ar)
    assert generate("sd", target, draft) == ar
    assert generate("ssd", target, draft) == ar
    # a draft that is the target: every speculation is accepted, which exercises the cache-hit path
    assert generate("ssd", target, adapter("qwen2-tied", 0)) == ar
