"""How many threads saguaro's own CPU kernels (projections, attention) use in the calling thread.

A native model adapter sets it (``NativeModelAdapter.use_threads``, which the runtime's workers call
through ``use_worker_threads``, or ``num_threads=`` on every call) and then runs torch's own operators
(norms, rotary, residual adds: tiny at decode sizes) on one thread: with torch's intra-op
pool on the second core as well, its wake-ups collide with the kernels' spinning column pool
(measured on the quantized 0.5B draft, two cores: a decode 26-29 ms with torch on two threads, 23-24 ms
with torch on one and the kernels on two; a 4-row extend 43-47 against 34-38 ms). Unset, the kernels
follow ``torch.get_num_threads()``, as before. The setting is per thread: the SSD target and draft
workers each have their own.
"""
from __future__ import annotations

import threading
from typing import Any

import torch

_local = threading.local()


def kernel_threads() -> int:
    """Threads for saguaro's kernels in this thread: the value set here, else torch.get_num_threads()."""
    n = getattr(_local, "threads", None)
    return n if n is not None else torch.get_num_threads()


def use_worker_threads(adapter: Any, threads: int) -> None:
    """Give the calling worker thread ``threads`` threads for ``adapter``'s model: the adapter's own way
    where it has one (``NativeModelAdapter.use_threads``: the kernels on all of them, torch's operators
    on one), else torch's intra-op threads (a Hugging Face or callable model runs on torch's)."""
    use = getattr(adapter, "use_threads", None)
    if use is not None:
        use(threads)
    else:
        torch.set_num_threads(threads)


def set_kernel_threads(threads: int | None) -> None:
    """Sets (or with None clears) this thread's kernel thread count; ValueError below 1."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads: expected an integer >= 1 or None, got {threads!r}")
    _local.threads = threads
