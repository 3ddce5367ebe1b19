"""How the bindings borrow tensors (cpp/bindings/dlpack_tensor.hpp): a plain torch.Tensor through
torch._C._to_dlpack (the fast path), anything else with __dlpack__ through that method. Both must see
the same memory, and what __dlpack__ refuses must still be refused with the same ValueError."""
from __future__ import annotations

import pytest
import torch

from saguaro.kernels import norm

pytestmark = pytest.mark.skipif(not norm._built(), reason="the extension has no rms_norm_bf16")

EPS = 1e-6


class Subclass(torch.Tensor):
    """A torch.Tensor subclass: it may override __dlpack__, so it takes the general path."""


class Exporter:
    """Not a tensor, only a DLPack exporter (as another array library's objects are)."""

    def __init__(self, t: torch.Tensor) -> None:
        self.t = t
        self.calls = 0

    def __dlpack__(self, **kw):
        self.calls += 1
        return self.t.__dlpack__(**kw)


def call(x, w, out) -> torch.Tensor:
    norm.core().rms_norm_bf16(x, w, EPS, out)
    return out


def test_every_way_in_reads_and_writes_the_same_memory():
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(3, 64, generator=g).bfloat16(), torch.randn(64, generator=g).bfloat16()
    want = call(x, w, torch.empty_like(x))
    got_sub = call(x.as_subclass(Subclass), w.as_subclass(Subclass), torch.empty_like(x).as_subclass(Subclass))
    out = torch.empty_like(x)
    ex = Exporter(out)
    call(Exporter(x), Exporter(w), ex)
    assert ex.calls == 1
    assert torch.equal(got_sub.as_subclass(torch.Tensor), want) and torch.equal(out, want)


def test_a_view_with_an_offset_is_read_at_its_offset():
    x = torch.randn(4, 32).bfloat16()
    w = torch.ones(32).bfloat16()
    assert torch.equal(call(x[2:], w, torch.empty(2, 32, dtype=torch.bfloat16)), call(x[2:].clone(), w, torch.empty(2, 32, dtype=torch.bfloat16)))


def test_a_tensor_that_needs_gradients_is_refused_as_dlpack_refuses_it():
    x = torch.randn(1, 16).bfloat16().requires_grad_(True)
    with pytest.raises(ValueError, match="x: could not be exported through DLPack.*gradient"):
        call(x, torch.ones(16).bfloat16(), torch.empty(1, 16, dtype=torch.bfloat16))


def test_wrong_layouts_and_types_get_the_argument_named():
    w = torch.ones(16).bfloat16()
    with pytest.raises(ValueError, match="x: must be C-contiguous"):
        call(torch.randn(16, 2).bfloat16().t(), w, torch.empty(2, 16, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="weight: expected dtype bfloat16"):
        call(torch.randn(1, 16).bfloat16(), torch.ones(16), torch.empty(1, 16, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="out: expected a tensor"):
        call(torch.randn(1, 16).bfloat16(), w, [0.0] * 16)
