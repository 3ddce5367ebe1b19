"""Converting a GGUF file once into a cache directory (safetensors + config + tokenizer)."""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import torch
from tqdm import tqdm

from saguaro.models.model_store import cache_root, dtype_name, publish_directory
from saguaro.models.gguf_file import GGUFFile
from saguaro.models.tokenizer import Tokenizer


def converted_directory(gguf_path: Path, dtype: torch.dtype, key: str | None = None) -> Path:
    """Where the conversion of gguf_path to dtype lives: <cache>/converted/<name>-<key>-<dtype>.

    key defaults to a hash of the file's absolute path, size and modification time.
    """
    if key is None:
        st = gguf_path.stat()
        key = hashlib.sha1(f"{gguf_path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:12]
    return cache_root() / "converted" / f"{gguf_path.stem}-{key}-{dtype_name(dtype)}"


def convert_gguf(gguf_path: Path, out_dir: Path, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Dequantize gguf_path into out_dir (atomically) and return the weights, already in dtype."""
    from safetensors.torch import save_file

    g = GGUFFile(gguf_path)
    config = g.config()
    tokenizer = Tokenizer.from_gguf_metadata(g.metadata)
    weights: dict[str, torch.Tensor] = {}
    for name, w in tqdm(g.tensors(config), total=len(g.tensor_infos), desc=f"dequantizing {gguf_path.name}",
                        unit="tensor", leave=False):
        weights[name] = w.to(dtype).contiguous()
    weights = stack_projections(weights, config.num_layers)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".", dir=out_dir.parent))
    try:
        save_file(weights, str(tmp / "model.safetensors"), metadata={"source": gguf_path.name})
        (tmp / "config.json").write_text(json.dumps(config.to_hf_dict(), indent=1), encoding="utf-8")
        tokenizer.save(tmp)
        publish_directory(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return weights


def stack_projections(weights: dict[str, torch.Tensor], num_layers: int) -> dict[str, torch.Tensor]:
    """Store q/k/v and gate/up stacked, as the native model uses them, so loading needs no copies."""
    out = dict(weights)
    for i in range(num_layers):
        a, m = f"model.layers.{i}.self_attn.", f"model.layers.{i}.mlp."
        for kind in ("weight", "bias"):
            parts = [f"{a}{p}_proj.{kind}" for p in "qkv"]
            if all(p in out for p in parts):
                out[f"{a}qkv_proj.{kind}"] = torch.cat([out.pop(p) for p in parts], 0)
        parts = [m + "gate_proj.weight", m + "up_proj.weight"]
        if all(p in out for p in parts):
            out[m + "gate_up_proj.weight"] = torch.cat([out.pop(p) for p in parts], 0)
    return out
