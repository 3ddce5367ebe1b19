"""saguaro.kernels.threads: the kernels' thread count is per calling thread, set by the adapter
(num_threads), with torch's own operators on one thread; unset, it follows torch."""
from __future__ import annotations

import threading

import pytest
import torch

from saguaro.kernels import threads as kt
from saguaro.models.native_adapter import NativeModelAdapter

from tests.models.conftest import make_hf, native_from_hf


def test_unset_follows_torch_and_bad_values_raise() -> None:
    kt.set_kernel_threads(None)
    assert kt.kernel_threads() == torch.get_num_threads()
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="threads"):
            kt.set_kernel_threads(bad)


def test_the_setting_belongs_to_the_calling_thread() -> None:
    kt.set_kernel_threads(97)
    seen = []
    # the other thread's default is torch's count as that thread sees it (OpenMP's is per thread too)
    t = threading.Thread(target=lambda: seen.append((kt.kernel_threads(), torch.get_num_threads())))
    t.start()
    t.join(timeout=30)
    try:
        assert kt.kernel_threads() == 97
        assert len(seen) == 1 and seen[0][0] == seen[0][1] != 97, "another thread does not see this thread's setting"
    finally:
        kt.set_kernel_threads(None)


def test_adapter_gives_its_threads_to_the_kernels_and_one_to_torch(monkeypatch) -> None:
    adapter = native_from_hf(make_hf("qwen2-tied"), dtype=torch.bfloat16, num_threads=2)  # packed kernels
    assert isinstance(adapter, NativeModelAdapter)
    seen = []
    real = kt.kernel_threads

    def spy() -> int:
        seen.append((real(), torch.get_num_threads()))
        return real()

    # the projections read the count through the linear layers' module-level name
    import saguaro.models.linear as linear_mod
    monkeypatch.setattr(linear_mod, "kernel_threads", spy)
    old = torch.get_num_threads()
    try:
        adapter.prefill([0], [[1, 2, 3, 4]])
        adapter.extend([0], [[5]])
    finally:
        torch.set_num_threads(old)
        kt.set_kernel_threads(None)
    assert seen and set(seen) == {(2, 1)}


def test_an_fp32_model_keeps_torch_on_its_threads() -> None:
    adapter = native_from_hf(make_hf("qwen2-tied"), num_threads=2)  # fp32: torch runs the projections
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        adapter.prefill([0], [[1, 2, 3]])
        assert kt.kernel_threads() == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(old)
        kt.set_kernel_threads(None)
