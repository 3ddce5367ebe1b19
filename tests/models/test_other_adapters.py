"""HFModelAdapter and CallableAdapter (callable and TorchScript) give the native adapter's logits."""
from __future__ import annotations

import pytest
import torch

import saguaro.models as M
from conftest import make_hf, native_from_hf

TOL = 1e-4


def _script(hf) -> torch.jit.ScriptModule:
    class Wrapped(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.m(input_ids=ids, use_cache=False).logits

    with torch.no_grad():
        return torch.jit.trace(Wrapped(hf), torch.tensor([[1, 2, 3]]), strict=False, check_trace=False)


def _drive(adapter) -> list[torch.Tensor]:
    """One fixed sequence of protocol calls; returns every result."""
    out = [adapter.prefill([1, 2], [list(range(3, 15)), list(range(20, 29))])]
    out.append(adapter.extend([2, 1], [[5, 6, 7], [8]]))
    adapter.truncate(1, 10)
    out.append(adapter.extend([1], [[40, 41]]))
    rows, visible = [1, 2, 1], [12, 12, 9]
    for d, toks in enumerate([[1, 2, 3], [4, 5, 6], [7, 8, 9]]):
        out.append(adapter.tree_step(rows, visible, toks, d))
    out.append(adapter.extend([2], [[11]]))
    assert adapter.length(1) == 12 and adapter.length(2) == 13
    adapter.release(1)
    return out


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("kind", ["hf", "callable", "torchscript"])
def test_matches_native(kind):
    hf = make_hf("qwen2-untied")
    ref = _drive(native_from_hf(hf))
    if kind == "hf":
        adapter = M.HFModelAdapter(hf)
    elif kind == "callable":
        adapter = M.CallableAdapter(lambda ids: hf(input_ids=ids, use_cache=False).logits)
    else:
        adapter = M.load(_script(hf)).adapter
        assert isinstance(adapter, M.CallableAdapter)
    assert adapter.vocab_size == 97
    got = _drive(adapter)
    for i, (a, b) in enumerate(zip(got, ref)):
        assert a.dtype == torch.float32 and a.is_contiguous() and a.device.type == "cpu"
        assert a.shape == b.shape, i
        assert (a - b).abs().max().item() <= TOL, i


def test_callable_with_wrong_output_shape():
    with pytest.raises(ValueError, match=r"logits \[B, T, V\]"):
        M.CallableAdapter(lambda ids: torch.zeros(5))
