"""The saguaro cache directory: assembled model files and converted (safetensors) models."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

DTYPE_NAMES = {torch.bfloat16: "bf16", torch.float32: "fp32", torch.float16: "fp16"}


def cache_root() -> Path:
    """$SAGUARO_CACHE, or ~/.cache/saguaro."""
    env = os.environ.get("SAGUARO_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "saguaro"


def dtype_name(dtype: torch.dtype) -> str:
    """Short name of a supported weight dtype (ValueError otherwise)."""
    if dtype not in DTYPE_NAMES:
        raise ValueError(f"unsupported dtype {dtype}: use torch.bfloat16, torch.float16 or torch.float32")
    return DTYPE_NAMES[dtype]


def publish_directory(tmp: Path, final: Path) -> None:
    """Move a fully written directory into place (another process may have won the race: keep theirs)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, final)
    except OSError:
        if not final.exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
