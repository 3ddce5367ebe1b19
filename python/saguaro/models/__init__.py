"""Model adapters: the native decoder with its own KV cache and tree attention, transformers and
callable adapters, and loading of presets, Hugging Face directories and GGUF files.

Typical use::

    target = saguaro.models.load("qwen2.5-coder-1.5b")            # LoadedModel(adapter, tokenizer, name, config)
    draft = saguaro.models.load("qwen2.5-coder-0.5b", int8=True)  # weight-only int8: drafts only
    saguaro.models.check_vocab_compatible(target, draft)
    pair = saguaro.models.load_pair("smollm2-135m", "smollm2-135m")  # a checked target/draft pair
    logits = target.adapter.prefill([0], [target.tokenizer.encode("def f(x):")])   # float32 [1, V] on the CPU

Every adapter follows `ModelAdapter` (docs/contracts.md §3).
"""
from __future__ import annotations

from saguaro.models.adapter import ModelAdapter
from saguaro.models.callable_adapter import CallableAdapter
from saguaro.models.config import SUPPORTED_ARCHITECTURES, ModelConfig, UnsupportedArchitectureError
from saguaro.models.decoder import DecoderModel
from saguaro.models.hf_adapter import HFModelAdapter
from saguaro.models.draft_vocabulary import DraftVocabulary
from saguaro.models.loading import LoadedModel, default_pair, load, restrict_draft_vocabulary, runs_quantized
from saguaro.models.native_adapter import NativeModelAdapter
from saguaro.models.pair import ModelPair, check_pair, load_pair
from saguaro.models.presets import PRESETS
from saguaro.models.tokenizer import Tokenizer
from saguaro.models.vocab import check_vocab_compatible

__all__ = [
    "ModelAdapter", "NativeModelAdapter", "HFModelAdapter", "CallableAdapter", "DecoderModel", "ModelConfig",
    "SUPPORTED_ARCHITECTURES", "UnsupportedArchitectureError", "LoadedModel", "load", "runs_quantized", "default_pair",
    "PRESETS", "Tokenizer", "check_vocab_compatible", "DraftVocabulary", "restrict_draft_vocabulary", "ModelPair",
    "load_pair", "check_pair",
]
