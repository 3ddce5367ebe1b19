"""The fixed-shape forwards that CUDA graphs replay (saguaro.models.step_graphs) equal the adapter's
ordinary path: on the CPU they run eagerly (cuda_graphs=True without a GPU), on a GPU captured."""
from __future__ import annotations

import pytest
import torch

from conftest import make_hf, native_from_hf
from saguaro.models import step_graphs

TOL = 1e-5


def _rand(n: int, seed: int) -> list[int]:
    return torch.randint(0, 97, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def _script(adapter) -> list[torch.Tensor]:
    """Decode, a K+1-token verification, a truncation and a 3-step tree of 4 branches, for one sequence."""
    prompt = _rand(40, 1)
    out = [adapter.prefill([7], [prompt])]
    out.append(adapter.extend([7], [[5]]))
    out.append(adapter.extend([7], [_rand(5, 2)]))
    adapter.truncate(7, 43)
    out.append(adapter.extend([7], [[9]]))
    visible = [44, 44, 43, 42]
    for d in range(3):
        out.append(adapter.tree_step([7] * 4, visible, _rand(4, 10 + d), d))
    out.append(adapter.extend([7], [_rand(3, 20)]))  # after the tree: the sequence itself is untouched
    return [o.cpu() for o in out]


@pytest.mark.parametrize("family", ["qwen2-untied", "qwen3", "llama3-scaled"])
def test_fixed_shape_forwards_equal_the_ordinary_path(family):
    hf = make_hf(family)
    plain = native_from_hf(hf, cuda_graphs=False)
    fixed = native_from_hf(hf, cuda_graphs=True)  # on the CPU: the same fixed-shape forwards, eagerly
    for a, b in zip(_script(plain), _script(fixed)):
        assert a.shape == b.shape
        assert (a - b).abs().max().item() <= TOL
    stats = fixed.graph_stats()
    assert stats["enabled"] and stats["graphs"] >= 3  # decode, 5 rows, 4 branches (+ the 3-row extend)
    assert plain.graph_stats() is None


def test_a_span_crossing_a_bucket_gets_its_own_fixed_shape(monkeypatch):
    monkeypatch.setattr(step_graphs, "BUCKET", 16)
    hf = make_hf("qwen3")
    plain = native_from_hf(hf, cuda_graphs=False)
    fixed = native_from_hf(hf, cuda_graphs=True)
    for adapter in (plain, fixed):
        adapter.prefill([1], [_rand(14, 3)])
    for i in range(6):  # 14 -> 20 slots: spans 16 then 32
        a, b = plain.extend([1], [[i]]), fixed.extend([1], [[i]])
        assert (a - b).abs().max().item() <= TOL
    assert fixed.graph_stats()["graphs"] == 2


def test_a_wrong_mask_would_be_caught():
    # the check can fail: a fixed-shape forward that lets row 0 see row 1's slot differs from the path
    hf = make_hf("qwen2-untied")
    fixed = native_from_hf(hf, cuda_graphs=True)
    plain = native_from_hf(hf, cuda_graphs=False)
    prompt = _rand(10, 4)
    fixed.prefill([1], [prompt])
    plain.prefill([1], [prompt])
    kv = fixed._cache.get(1)
    leaky = torch.ones((2, 12), dtype=torch.bool)  # no causal limit
    with torch.inference_mode():  # as the adapter calls it
        got = fixed._graphs.run(kv, [3, 4], [10, 11], [10, 11], leaky)
    ref = plain.extend([1], [[3, 4]])
    assert (got[0] - ref[0]).abs().max().item() > 1e-3  # row 0 saw row 1's slot


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none is visible)")
def test_captured_graphs_replay_the_eager_forwards_on_cuda():
    from saguaro.models import DecoderModel, ModelConfig, NativeModelAdapter

    hf = make_hf("qwen3")
    config = ModelConfig.from_hf_dict(hf.config.to_dict())
    sd = dict(hf.state_dict())
    eager = NativeModelAdapter(DecoderModel.from_state_dict(config, sd, dtype=torch.float32, device="cuda"),
                               cuda_graphs=False)
    graphed = NativeModelAdapter(DecoderModel.from_state_dict(config, sd, dtype=torch.float32, device="cuda"))
    for a, b in zip(_script(eager), _script(graphed)):
        assert (a - b).abs().max().item() <= 1e-4
    stats = graphed.graph_stats()
    assert stats["enabled"], stats["disabled_reason"]
    assert stats["captures"] >= 3
    # a second run of the same shapes replays
    _script(graphed)
    assert graphed.graph_stats()["replays"] > 0
