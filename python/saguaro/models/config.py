"""The hyper-parameters of a decoder-only model, in one record the native implementation reads."""
from __future__ import annotations

import dataclasses
import json
import math
import numbers
from pathlib import Path
from typing import Any

SUPPORTED_ARCHITECTURES = ("qwen2", "qwen3", "llama")
"""Model families the native implementation runs (Qwen2/Qwen2.5, Qwen3, Llama 3, SmolLM2)."""

_HF_ARCH_NAMES = {
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
    "LlamaForCausalLM": "llama",
}


SUPPORTED_ROPE_TYPES = ("llama3", "freq_factors")
"""RoPE scalings the native implementation applies (besides none, rope_type "default").

"llama3": Llama 3's smooth low-frequency scaling (factor, low/high_freq_factor, original_max_position_embeddings).
"freq_factors": {"factors": [head_dim/2 divisors]}, inv_freq = plain inv_freq / factors, exactly what llama.cpp
does with a GGUF file's rope_freqs tensor (the conversion cache stores GGUF files' scaling this way).
"""


def rope_type(scaling: dict[str, Any] | None) -> str | None:
    """The kind of a rope_scaling dict (its rope_type, or the older type key); None for no scaling.

    A missing dict, a missing type and "default" all mean plain RoPE, as in transformers' config.json.
    Raises NotImplementedError for a kind outside SUPPORTED_ROPE_TYPES.
    """
    if not scaling:
        return None
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "default":
        return None
    if kind not in SUPPORTED_ROPE_TYPES:
        raise NotImplementedError(f"unsupported rope scaling {kind!r} (rope_scaling rope_type): the native "
                                  f"implementation applies {', '.join(map(repr, SUPPORTED_ROPE_TYPES))} or none "
                                  "('default'); load this model as a transformers model (HFModelAdapter) instead")
    return kind


def check_rope_scaling(scaling: dict[str, Any] | None, head_dim: int) -> str | None:
    """rope_type(scaling), after checking a "freq_factors" list: head_dim/2 positive finite numbers, else ValueError."""
    kind = rope_type(scaling)
    if kind == "freq_factors":
        assert scaling is not None  # rope_type returned a kind
        expected = f"rope_scaling['factors'] must be a list of head_dim/2 = {head_dim // 2} positive finite numbers " \
                   "(one divisor per rotary frequency)"
        factors = scaling.get("factors")
        if not isinstance(factors, (list, tuple)):
            raise ValueError(f"{expected}, got {type(factors).__name__}")
        if len(factors) != head_dim // 2:
            raise ValueError(f"{expected}, got {len(factors)} numbers")
        for i, f in enumerate(factors):
            if isinstance(f, bool) or not isinstance(f, numbers.Real) or not math.isfinite(f) or f <= 0:
                raise ValueError(f"{expected}, got {f!r} at index {i}")
    return kind


class UnsupportedArchitectureError(ValueError):
    """The model's architecture is not one the native implementation runs."""


def unsupported(arch: str) -> UnsupportedArchitectureError:
    """The error for an architecture the native implementation does not run."""
    return UnsupportedArchitectureError(
        f"unsupported model architecture {arch!r}: the native implementation runs "
        f"{', '.join(SUPPORTED_ARCHITECTURES)} (Qwen2/Qwen2.5, Qwen3, Llama 3, SmolLM2); "
        "load other causal LMs as a transformers model (HFModelAdapter) or a callable (CallableAdapter)"
    )


@dataclasses.dataclass
class ModelConfig:
    """Shapes and constants of a Qwen2/Qwen3/Llama-style decoder."""

    architecture: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None
    max_position_embeddings: int = 4096
    tie_word_embeddings: bool = False
    attention_bias: bool = False   # q/k/v biases (Qwen2)
    qk_norm: bool = False          # per-head RMSNorm on q and k (Qwen3)
    eos_token_ids: list[int] = dataclasses.field(default_factory=list)
    bos_token_id: int | None = None

    def __post_init__(self) -> None:
        if self.architecture not in SUPPORTED_ARCHITECTURES:
            raise unsupported(self.architecture)
        if self.num_heads % self.num_kv_heads != 0:
            raise ValueError(f"num_heads {self.num_heads} is not a multiple of num_kv_heads {self.num_kv_heads}")
        check_rope_scaling(self.rope_scaling, self.head_dim)

    @classmethod
    def from_hf_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        """Build from a transformers config.json dictionary."""
        arch = d.get("model_type")
        if arch is None:
            names = d.get("architectures") or []
            arch = _HF_ARCH_NAMES.get(names[0], names[0]) if names else "unknown"
        if arch not in SUPPORTED_ARCHITECTURES:
            raise unsupported(str(arch))
        heads = int(d["num_attention_heads"])
        hidden = int(d["hidden_size"])
        eos = d.get("eos_token_id")
        eos_ids = [] if eos is None else ([int(eos)] if isinstance(eos, int) else [int(e) for e in eos])
        scaling = d.get("rope_scaling")
        theta = d.get("rope_theta")
        params = d.get("rope_parameters")  # newer transformers keep theta and scaling here
        if isinstance(params, dict):
            theta = params.get("rope_theta", theta)
            if params.get("rope_type", "default") != "default":
                scaling = params
        if rope_type(scaling) is None:
            scaling = None
        return cls(
            architecture=arch,
            vocab_size=int(d["vocab_size"]),
            hidden_size=hidden,
            intermediate_size=int(d["intermediate_size"]),
            num_layers=int(d["num_hidden_layers"]),
            num_heads=heads,
            num_kv_heads=int(d.get("num_key_value_heads") or heads),
            head_dim=int(d.get("head_dim") or hidden // heads),
            rms_norm_eps=float(d.get("rms_norm_eps", 1e-6)),
            rope_theta=float(theta if theta is not None else 10000.0),
            rope_scaling=dict(scaling) if scaling else None,
            max_position_embeddings=int(d.get("max_position_embeddings", 4096)),
            tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
            attention_bias=bool(d.get("attention_bias", arch == "qwen2")),
            qk_norm=arch == "qwen3",
            eos_token_ids=eos_ids,
            bos_token_id=d.get("bos_token_id"),
        )

    def to_hf_dict(self) -> dict[str, Any]:
        """A transformers-compatible config.json dictionary (what the conversion cache stores)."""
        names = {v: k for k, v in _HF_ARCH_NAMES.items()}
        d: dict[str, Any] = {
            "architectures": [names[self.architecture]],
            "model_type": self.architecture,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": self.rope_scaling,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": self.attention_bias,
            "hidden_act": "silu",
            "eos_token_id": self.eos_token_ids[0] if len(self.eos_token_ids) == 1 else self.eos_token_ids,
            "bos_token_id": self.bos_token_id,
        }
        return d

    @classmethod
    def from_json_file(cls, path: str | Path) -> "ModelConfig":
        """Read a config.json."""
        with open(path, encoding="utf-8") as f:
            return cls.from_hf_dict(json.load(f))
