"""Memory for packed weights: 2 MiB-aligned and on transparent huge pages where the kernel grants them.

A decode streams every weight byte once per token (about 1 GB for the quantized 1.5B target), and on
4 KiB pages that is a page walk for every 4 KiB read. Linux backs memory with 2 MiB pages when asked
(``madvise``; /sys/kernel/mm/transparent_hugepage/enabled set to "always" or "madvise"). Measured on the
quantized 1.5B target, 2 threads, Intel Xeon, alternated in one hour: a decode 61-67 -> 54-56 ms, its
projections 52-57 -> 45-46 ms (bench/results/forward-profile-qwen2.5-coder-1.5b-quantized-2t.md); the
machine's read bandwidth 21 -> 34 GB/s. Where the kernel has no transparent huge pages the buffer is
ordinary memory: the same bits either way.
"""
from __future__ import annotations

import math

import torch

#: the huge page size asked for (x86-64 and aarch64 with 4 KiB base pages)
HUGE_PAGE_BYTES = 2 << 20


def weight_buffer(shape: tuple[int, ...] | list[int], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialized contiguous CPU tensor for weights that the caller fills once and then only reads.

    From 2 MiB up it starts on a 2 MiB boundary (a view into an allocation 2 MiB larger, whose unused
    part is never touched, so never resident) and its whole 2 MiB pages are advised as huge before
    anything is written; the tail past the last whole page stays on small pages, so resident memory
    grows by nothing. Smaller tensors are a plain ``torch.empty``."""
    nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
    if nbytes < HUGE_PAGE_BYTES:
        return torch.empty(shape, dtype=dtype)
    from saguaro import _core  # the callers are kernels of the same extension
    raw = torch.empty(nbytes + HUGE_PAGE_BYTES, dtype=torch.uint8)
    start = -raw.data_ptr() % HUGE_PAGE_BYTES
    buf = raw[start : start + nbytes]
    _core.advise_huge_pages(buf)
    return buf.view(dtype).view(shape)
