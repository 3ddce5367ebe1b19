"""saguaro: speculative speculative decoding (SSD) with an exact output distribution."""
from __future__ import annotations

from saguaro._build_info import build_info

__version__ = "0.1.0"

__all__ = ["__version__", "build_info"]
