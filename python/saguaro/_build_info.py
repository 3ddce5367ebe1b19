"""What this installation contains: version, CUDA kernels, visible devices, NCCL."""
from __future__ import annotations

import ctypes
import glob
import importlib.util
import os
from typing import Any


def nccl_library_path() -> str | None:
    """Path of a loadable NCCL library (the nvidia-nccl wheel or the system's), or None.

    NCCL is only ever loaded at run time; the core never links it.
    """
    candidates: list[str] = []
    spec = importlib.util.find_spec("nvidia")
    if spec is not None and spec.submodule_search_locations:
        for root in spec.submodule_search_locations:
            candidates += glob.glob(os.path.join(root, "nccl", "lib", "libnccl.so*"))
    candidates += ["libnccl.so.2", "libnccl.so"]
    for path in candidates:
        try:
            ctypes.CDLL(path)
            return path
        except OSError:
            continue
    return None


def build_info() -> dict[str, Any]:
    """Report the version, whether CUDA kernels were compiled, how many CUDA devices are
    visible (0 on a GPU-less machine, never an error) and whether NCCL can be loaded."""
    from saguaro import _core

    info = dict(_core.build_info())
    nccl = nccl_library_path()
    info["nccl_available"] = nccl is not None
    info["nccl_library"] = nccl
    return info
