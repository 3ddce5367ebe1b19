"""saguaro: speculative speculative decoding (SSD) with an exact output distribution."""
from __future__ import annotations

from saguaro._build_info import build_info
from saguaro.config import RequestParams, SpeculationConfig
from saguaro.engine import Engine, Stream
from saguaro.results import RequestOutput, StreamDelta
from saguaro.sampling_params import SamplingParams

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "build_info",
    "Engine",
    "Stream",
    "SamplingParams",
    "SpeculationConfig",
    "RequestParams",
    "RequestOutput",
    "StreamDelta",
]
