"""Native decoder logits equal transformers' on tiny random models of every supported family (fp32)."""
from __future__ import annotations

import torch

from conftest import make_hf, native_from_hf


def _hf_logits(model, tokens: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([tokens])).logits[0].float()


def test_prefill_and_extend_match_transformers(family):
    hf = make_hf(family)
    native = native_from_hf(hf)
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 97, (40,), generator=g).tolist()
    ref = _hf_logits(hf, tokens)
    last = native.prefill([7], [tokens[:30]])
    assert last.dtype == torch.float32 and last.is_contiguous() and last.shape == (1, 97)
    assert (last[0] - ref[29]).abs().max().item() <= 1e-4
    ext = native.extend([7], [tokens[30:35]])
    assert (ext - ref[30:35]).abs().max().item() <= 1e-4
    one = native.extend([7], [tokens[35:36]])
    assert (one[0] - ref[35]).abs().max().item() <= 1e-4
    assert native.length(7) == 36


def test_parity_check_catches_a_planted_bias(family):
    hf = make_hf(family)
    native = native_from_hf(hf)
    down = native.model.layers[1].mlp.down
    down.weight = down.weight.clone()  # the native model shares storage with the HF weights
    down.weight += 0.01 * torch.randn(down.weight.shape, generator=torch.Generator().manual_seed(0))
    tokens = list(range(1, 20))
    ref = _hf_logits(hf, tokens)
    got = native.prefill([0], [tokens])
    assert (got[0] - ref[-1]).abs().max().item() > 1e-4
