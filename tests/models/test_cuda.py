"""The native adapter on a CUDA device gives the CPU's logits (same generic torch code path)."""
from __future__ import annotations

import pytest
import torch

from conftest import make_hf
from saguaro import _core
from saguaro.models import DecoderModel, ModelConfig, NativeModelAdapter

pytestmark = pytest.mark.gpu


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none is visible)")
def test_cuda_matches_cpu():
    hf = make_hf("qwen3")
    config = ModelConfig.from_hf_dict(hf.config.to_dict())
    sd = dict(hf.state_dict())
    outs = []
    for device in ("cpu", "cuda"):
        a = NativeModelAdapter(DecoderModel.from_state_dict(config, sd, dtype=torch.float32, device=device))
        res = [a.prefill([0, 1], [list(range(1, 20)), list(range(5, 12))]), a.extend([1, 0], [[3, 4], [5]])]
        res += [a.tree_step([0, 1, 0], [20, 9, 15], [1, 2, 3], d) for d in range(3)]
        # device-resident (docs/contracts.md §3): rows stay on the model's device when the runtime's CUDA
        # kernels can read them there
        want = "cuda" if device == "cuda" and _core.kernels_have_cuda else "cpu"
        for r in res:
            assert r.device.type == want and r.dtype == torch.float32 and r.is_contiguous()
        outs.append([r.cpu() for r in res])
    for a, b in zip(*outs):
        assert (a - b).abs().max().item() <= 1e-4
