"""saguaro: speculative speculative decoding (SSD) with an exact output distribution."""
from __future__ import annotations

import os as _os
import sys as _sys

# saguaro's CPU kernels run on their own worker threads beside torch's OpenMP pool. OpenMP threads
# that spin after each torch op hold the very cores those workers need (a 2-thread bf16 decode of the
# 0.5B took 77 ms spinning vs 51-55 ms passive, 1 thread: 77-79). OpenMP reads this once, when torch
# loads, so it is only a default set before torch is imported; an explicit setting always wins.
if "torch" not in _sys.modules:
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from saguaro._build_info import build_info  # noqa: E402
from saguaro.runtime import RequestParams  # noqa: E402
from saguaro.speculation_config import SpeculationConfig  # noqa: E402
from saguaro.engine import Engine, Stream  # noqa: E402
from saguaro.async_engine import AsyncEngine, AsyncStream  # noqa: E402
from saguaro.results import RequestOutput, StreamDelta  # noqa: E402
from saguaro.sampling_params import SamplingParams  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "build_info",
    "Engine",
    "Stream",
    "AsyncEngine",
    "AsyncStream",
    "SamplingParams",
    "SpeculationConfig",
    "RequestParams",
    "RequestOutput",
    "StreamDelta",
]
