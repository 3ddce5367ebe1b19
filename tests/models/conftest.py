"""Tiny random transformers models of each supported family, and their native twins."""
from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from saguaro.models.config import ModelConfig  # noqa: E402
from saguaro.models.decoder import DecoderModel  # noqa: E402
from saguaro.models.native_adapter import NativeModelAdapter  # noqa: E402

COMMON = dict(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-6)

FAMILIES = {
    "qwen2-untied": ("Qwen2Config", "Qwen2ForCausalLM", dict(tie_word_embeddings=False, rope_theta=10000.0)),
    "qwen2-tied": ("Qwen2Config", "Qwen2ForCausalLM", dict(tie_word_embeddings=True, rope_theta=1000000.0)),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", dict(tie_word_embeddings=True, head_dim=32)),
    "llama3-scaled": ("LlamaConfig", "LlamaForCausalLM", dict(
        tie_word_embeddings=False, rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 64})),
    "llama-tied": ("LlamaConfig", "LlamaForCausalLM", dict(tie_word_embeddings=True)),
    # Llama 3.1's real scaling constants (original context 8192): what llama.cpp's rope_freqs encode
    "llama3.1": ("LlamaConfig", "LlamaForCausalLM", dict(
        tie_word_embeddings=False, rope_theta=500000.0, head_dim=32,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 8192})),
}


def make_hf(family: str, seed: int = 0):
    """A random tiny transformers causal LM (fp32, eval mode) of the given family."""
    cfg_cls, model_cls, extra = FAMILIES[family]
    cfg = getattr(transformers, cfg_cls)(**COMMON, **extra)
    torch.manual_seed(seed)
    model = getattr(transformers, model_cls)(cfg).eval()
    with torch.no_grad():  # random biases/norm weights so a dropped term shows up
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.normal_(0.0 if name.endswith("bias") else 1.0, 0.2)
    return model


def native_from_hf(model, dtype=torch.float32, **kwargs) -> NativeModelAdapter:
    """The native adapter over the same weights as a transformers model."""
    config = ModelConfig.from_hf_dict(model.config.to_dict())
    native = DecoderModel.from_state_dict(config, dict(model.state_dict()), dtype=dtype)
    return NativeModelAdapter(native, **kwargs)


@pytest.fixture(params=sorted(FAMILIES))
def family(request) -> str:
    return request.param
