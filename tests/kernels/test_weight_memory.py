"""Packed weights' memory (saguaro.kernels.weight_memory): 2 MiB-aligned, advised as huge pages before
the first write, the same values as any tensor, and small tensors left alone."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from saguaro import _core
from saguaro.kernels import small_gemm
from saguaro.kernels.weight_memory import HUGE_PAGE_BYTES, weight_buffer

THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def thp_mode() -> str:
    """The kernel's transparent huge page mode: the bracketed word ('' when the file is missing)."""
    try:
        text = THP.read_text()
    except OSError:
        return ""
    return text[text.index("[") + 1 : text.index("]")] if "[" in text else ""


def test_a_large_buffer_starts_on_a_huge_page_and_holds_its_values() -> None:
    t = weight_buffer((3, HUGE_PAGE_BYTES // 4 + 5), torch.float32)
    assert t.shape == (3, HUGE_PAGE_BYTES // 4 + 5) and t.dtype == torch.float32 and t.is_contiguous()
    assert t.data_ptr() % HUGE_PAGE_BYTES == 0
    ref = torch.randn(t.shape)
    t.copy_(ref)
    assert torch.equal(t, ref)


def test_a_small_buffer_is_plain_memory() -> None:
    t = weight_buffer((16, 64), torch.bfloat16)
    assert t.shape == (16, 64) and t.untyped_storage().nbytes() == 16 * 64 * 2


@pytest.mark.skipif(thp_mode() not in ("always", "madvise"), reason="this kernel has no transparent huge pages")
def test_the_whole_huge_pages_are_advised() -> None:
    raw = torch.empty(5 * HUGE_PAGE_BYTES, dtype=torch.uint8)
    start = -raw.data_ptr() % HUGE_PAGE_BYTES
    buf = raw[start : start + 2 * HUGE_PAGE_BYTES + 4096]  # two whole pages and a tail
    assert _core.advise_huge_pages(buf) == 2 * HUGE_PAGE_BYTES
    assert _core.advise_huge_pages(raw[start + 1 : start + HUGE_PAGE_BYTES]) == 0, "no whole page inside"


def test_advice_takes_a_flat_byte_tensor_only() -> None:
    with pytest.raises(ValueError, match="buffer: expected dtype uint8"):
        _core.advise_huge_pages(torch.empty(HUGE_PAGE_BYTES, dtype=torch.float32))


@pytest.mark.skipif(not small_gemm.available(), reason="the packed bf16 kernel needs AVX2+FMA")
def test_packed_weights_in_it_give_the_same_bits() -> None:
    torch.manual_seed(0)
    w = torch.randn(1024, 1536).to(torch.bfloat16)  # 3 MiB packed: on huge pages
    x = torch.randn(3, 1536).to(torch.bfloat16)
    packed = small_gemm.pack_bf16(w)
    assert packed.data.data_ptr() % HUGE_PAGE_BYTES == 0
    assert torch.equal(small_gemm.bf16_linear(x, packed), small_gemm.bf16_linear(x, w))
