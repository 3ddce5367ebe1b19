"""The transformers peers: ``generate()`` target-only and with ``assistant_model=`` (assisted generation).

They load the same weights as saguaro: a Hugging Face directory, or the GGUF file that a preset
names (dequantized by transformers once, then kept as a safetensors directory in a cache).
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Optional

def cache_root() -> Path:
    """Where the peers' transformers-format weights are kept (<saguaro cache>/transformers)."""
    return Path(os.environ.get("SAGUARO_CACHE", Path.home() / ".cache" / "saguaro")).expanduser() / "transformers"


def preset_gguf_path(spec: str) -> Optional[Path]:
    """The GGUF file of a saguaro preset (assembled from its packages by saguaro.models), else None."""
    from saguaro.models.presets import PRESETS, preset_gguf

    return preset_gguf(PRESETS[spec]) if spec in PRESETS else None


def transformers_source(spec: Any) -> tuple[str, Optional[str]]:
    """(directory, gguf file name or None) that ``from_pretrained`` can load for a model spec."""
    if not isinstance(spec, (str, os.PathLike)):
        raise ValueError(f"the transformers peers need a preset name, a directory or a .gguf path, got {type(spec).__name__}")
    s = str(spec)
    p = Path(s)
    if p.is_dir() and (p / "config.json").is_file():
        return str(p), None
    if p.suffix == ".gguf" and p.is_file():
        return str(p.parent), p.name
    gguf = preset_gguf_path(s)
    if gguf is not None and gguf.is_file():
        return str(gguf.parent), gguf.name
    raise ValueError(f"cannot find weights for {s!r} that transformers can load: give a Hugging Face directory, "
                     f"a .gguf file or a preset whose weights are installed")


def saguaro_converted_directory(spec: Any, dtype: Any) -> Optional[Path]:
    """saguaro's converted (safetensors) directory for a preset or .gguf spec; None for other specs."""
    from saguaro.models.convert import converted_directory
    from saguaro.models.presets import PRESETS

    s = str(spec)
    if s in PRESETS:
        preset = PRESETS[s]
        if preset.sha256 is not None:
            return converted_directory(Path(preset.file_name), dtype, key=preset.sha256[:12])
        return converted_directory(preset_gguf_path(s), dtype)
    if s.lower().endswith(".gguf") and Path(s).is_file():
        return converted_directory(Path(s), dtype)
    return None


def _unstack(weights: dict, config: dict) -> dict:
    """saguaro stores q/k/v and gate/up stacked; transformers wants them apart."""
    hd = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    nq, nkv = config["num_attention_heads"] * hd, config["num_key_value_heads"] * hd
    inter = config["intermediate_size"]
    out = {}
    for name, w in weights.items():
        if ".qkv_proj." in name:
            q, k, v = w.split([nq, nkv, nkv], 0)
            for part, t in zip("qkv", (q, k, v)):
                out[name.replace(".qkv_proj.", f".{part}_proj.")] = t.contiguous()
        elif ".gate_up_proj." in name:
            g, u = w.split([inter, inter], 0)
            out[name.replace(".gate_up_proj.", ".gate_proj.")] = g.contiguous()
            out[name.replace(".gate_up_proj.", ".up_proj.")] = u.contiguous()
        else:
            out[name] = w
    return out


def transformers_directory(spec: Any, dtype: Any) -> Path:
    """A transformers-format directory holding exactly the weights saguaro runs (same dtype).

    Built once from saguaro's converted directory (converting the GGUF first if needed).
    """
    import json

    from safetensors.torch import load_file, save_file

    conv = saguaro_converted_directory(spec, dtype)
    if conv is None:
        directory, gguf_file = transformers_source(spec)
        if gguf_file is None:
            return Path(directory)
        raise ValueError(f"cannot find saguaro's conversion of {spec!r}")
    out = cache_root() / conv.name
    if (out / "config.json").is_file() and (out / "model.safetensors").is_file():
        return out
    if not (conv / "model.safetensors").is_file():
        from saguaro import models

        models.load(spec, dtype=dtype, device="cpu")  # converts the GGUF into the cache
    config = json.loads((conv / "config.json").read_text(encoding="utf-8"))
    weights = _unstack(load_file(str(conv / "model.safetensors")), config)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    (tmp / "config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
    try:
        os.replace(tmp, out)
    except OSError:  # another process published it first
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return out


def load_transformers_model(spec: Any, dtype: Any) -> Any:
    """A transformers causal LM with the same weights saguaro loads for ``spec``, in ``dtype``."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(transformers_directory(spec, dtype)), dtype=dtype).eval()


def load_tokenizer(spec: Any) -> Any:
    """saguaro's tokenizer for a preset, a .gguf file or a directory (without loading the weights)."""
    from saguaro.models.gguf_file import GGUFFile
    from saguaro.models.tokenizer import Tokenizer

    directory, gguf_file = transformers_source(spec)
    if gguf_file is None:
        tok = Tokenizer.from_directory(directory)
        if tok is None:
            raise ValueError(f"{directory} has no tokenizer.json")
        return tok
    return Tokenizer.from_gguf_metadata(GGUFFile(Path(directory) / gguf_file).metadata)


class _FirstTokenClock:
    """A generate() streamer that notes when the first generated token arrives."""

    def __init__(self) -> None:
        self.calls = 0
        self.first_token_at: Optional[float] = None
        self.first_tokens = 0

    def put(self, value: Any) -> None:
        self.calls += 1
        if self.calls == 2 and self.first_token_at is None:  # call 1 is the prompt
            self.first_token_at = time.perf_counter()
            # assisted generation delivers a whole round at once: count what arrived with the first token
            self.first_tokens = int(getattr(value, "numel", lambda: 1)())

    def end(self) -> None:
        pass


class TransformersRunner:
    """Runs requests with ``model.generate`` (assisted when a draft is given), EOS ignored.

    A batch of several prompts runs as one left-padded ``generate`` call; assisted generation in
    transformers takes batch 1 only, so its batches run one request after another (recorded as
    ``metrics["sequential_batch"]``).
    """

    def __init__(self, target: Any, draft: Optional[Any] = None) -> None:
        self.target = target
        self.draft = draft

    def generate(self, batch_ids: list[list[int]], max_new_tokens: int, temperature: float, seed: int) -> dict:
        """Generate and time one batch; returns tokens (concatenated and per request), seconds and settings."""
        if not batch_ids or not all(batch_ids):
            raise ValueError("every request of a batch needs at least one prompt token")
        if self.draft is not None and len(batch_ids) > 1:
            parts = [self._generate([ids], max_new_tokens, temperature, seed) for ids in batch_ids]
            first = parts[0]
            per_request = [p["batch_token_ids"][0] for p in parts]
            metrics = dict(first["metrics"], sequential_batch=True,
                           rounds=sum(p["metrics"].get("rounds", 0) for p in parts))
            return {"token_ids": [t for r in per_request for t in r], "batch_token_ids": per_request,
                    "elapsed_s": sum(p["elapsed_s"] for p in parts), "ttft_s": first["ttft_s"],
                    "first_tokens": first["first_tokens"], "metrics": metrics}
        return self._generate(batch_ids, max_new_tokens, temperature, seed)

    def _generate(self, batch_ids: list[list[int]], max_new_tokens: int, temperature: float, seed: int) -> dict:
        import torch
        from transformers import GenerationConfig

        torch.manual_seed(seed)
        width = max(len(ids) for ids in batch_ids)
        pad = 0
        ids = torch.tensor([[pad] * (width - len(r)) + list(r) for r in batch_ids], dtype=torch.long)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in batch_ids], dtype=torch.long)
        gc = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=temperature > 0,
                              temperature=temperature if temperature > 0 else None, top_k=None, top_p=None,
                              eos_token_id=None, pad_token_id=pad)
        kwargs: dict = {"generation_config": gc, "attention_mask": mask}
        if self.draft is not None:
            kwargs["assistant_model"] = self.draft
            self.draft.generation_config.eos_token_id = None
        clock = _FirstTokenClock()
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = self.target.generate(ids, streamer=clock, **kwargs)
        t1 = time.perf_counter()
        per_request = [out[b, width:].tolist() for b in range(len(batch_ids))]
        metrics: dict = {}
        if self.draft is not None:
            dgc = self.draft.generation_config
            metrics["assistant"] = {k: getattr(dgc, k, None) for k in
                                    ("num_assistant_tokens", "num_assistant_tokens_schedule",
                                     "assistant_confidence_threshold")}
            # put() is called once per round of assisted generation (plus once for the prompt)
            metrics["rounds"] = max(clock.calls - 1, 0)
        ttft = (clock.first_token_at - t0) if clock.first_token_at else None
        return {"token_ids": [t for r in per_request for t in r], "batch_token_ids": per_request,
                "elapsed_s": t1 - t0, "ttft_s": ttft, "first_tokens": clock.first_tokens or len(batch_ids),
                "metrics": metrics}
