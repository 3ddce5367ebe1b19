"""Loading a Hugging Face style directory (config.json + safetensors, sharded or not)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import torch

from saguaro.models.config import ModelConfig
from saguaro.models.decoder import DecoderModel
from saguaro.models.tokenizer import Tokenizer


class SafetensorsWeights:
    """A lazy name -> tensor mapping over one or more safetensors files."""

    def __init__(self, directory: Path) -> None:
        from safetensors import safe_open

        index = directory / "model.safetensors.index.json"
        if index.is_file():
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            files = sorted(set(weight_map.values()))
        else:
            files = sorted(p.name for p in directory.glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"no *.safetensors weights in {directory}")
        self._handles = [safe_open(str(directory / f), framework="pt") for f in files]
        self._where = {name: h for h in self._handles for name in h.keys()}

    def __contains__(self, name: object) -> bool:
        return name in self._where

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self._where:
            raise KeyError(f"weight {name!r} not found in the safetensors files")
        return self._where[name].get_tensor(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)


def read_directory(directory: str | Path, *, dtype: torch.dtype, device: str | torch.device,
                   int8: bool | str = False) -> tuple[DecoderModel, Tokenizer | None, ModelConfig]:
    """The native model, tokenizer (None without tokenizer.json) and config of a directory."""
    d = Path(directory)
    if not (d / "config.json").is_file():
        raise FileNotFoundError(f"{d} has no config.json: not a Hugging Face model directory")
    raw = json.loads((d / "config.json").read_text(encoding="utf-8"))
    config = ModelConfig.from_hf_dict(raw)
    eos = set(config.eos_token_ids)
    gen = d / "generation_config.json"
    if gen.is_file():
        e = json.loads(gen.read_text(encoding="utf-8")).get("eos_token_id")
        eos.update([e] if isinstance(e, int) else (e or []))
    config.eos_token_ids = sorted(eos)
    model = DecoderModel.from_state_dict(config, SafetensorsWeights(d), dtype=dtype, device=device, int8=int8)
    tokenizer = Tokenizer.from_directory(d, eos_token_ids=config.eos_token_ids)
    return model, tokenizer, config
