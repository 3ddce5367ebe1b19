"""Writing a tiny GGUF file from a transformers model, the way llama.cpp's converter lays it out."""
from __future__ import annotations

from pathlib import Path

import numpy as np

_LAYER = {
    "input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight", "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.weight": "attn_k.weight", "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.weight": "attn_v.weight", "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight", "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight", "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight",
}


def _llama_cpp_permute(w: np.ndarray, heads: int) -> np.ndarray:
    # llama.cpp interleaves the two rotary halves of each head for the llama architecture
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def tiny_tokens(n: int) -> list[str]:
    """n distinct byte-level tokens (single characters of the GPT-2 byte alphabet) ending in ChatML controls."""
    alphabet = ["\u010a", "\u0120"] + [chr(c) for c in range(ord("!"), ord("~") + 1)]  # newline, space first
    return alphabet[: n - 2] + ["<|im_start|>", "<|im_end|>"]


def _quant_type(quant: str | dict[str, str] | None, name: str) -> str | None:
    """The GGML type name for tensor `name`: quant itself, or the first dict entry whose key is in the
    name ("*" matches all)."""
    if quant is None or isinstance(quant, str):
        return quant
    for key, kind in quant.items():
        if key == "*" or key in name:
            return kind
    return None


def write_gguf(model, path: Path, arch: str | None = None, rope_freqs: np.ndarray | None = None,
               quant: str | dict[str, str] | None = None) -> Path:
    """Write model (a tiny transformers Llama/Qwen2/Qwen3) as an F32 GGUF file.

    rope_freqs, when given, is written as the rope_freqs.weight tensor (per-frequency divisors) as it is,
    instead of the one a llama3-scaled config implies. quant: write the matrices (not norms or biases) in
    this GGML type ("Q8_0", "Q5_0": the types gguf-py can quantize), or per tensor: {"attn_v": "Q8_0",
    "*": "Q5_0"} (the first key found in the GGUF name).
    """
    import gguf

    cfg = model.config
    arch = arch or cfg.model_type
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_key_length(getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads)
    w.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]) if getattr(cfg, "rope_parameters", None)
                         else float(cfg.rope_theta))
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    tokens = tiny_tokens(cfg.vocab_size)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types([1] * (len(tokens) - 2) + [3, 3])
    w.add_token_merges([])
    w.add_eos_token_id(len(tokens) - 1)
    w.add_chat_template("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    heads, kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
    scaling = getattr(cfg, "rope_scaling", None) or {}
    if rope_freqs is not None:
        w.add_tensor("rope_freqs.weight", np.asarray(rope_freqs, dtype=np.float32))
    elif scaling.get("rope_type") == "llama3":
        # llama.cpp stores Llama 3 scaling as per-frequency divisors of the plain inverse frequencies
        from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
        scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](cfg, "cpu")
        dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
        theta = float(cfg.rope_parameters["rope_theta"]) if getattr(cfg, "rope_parameters", None) else cfg.rope_theta
        plain = 1.0 / (theta ** (np.arange(0, dim, 2, dtype=np.int64).astype(np.float32) / dim))
        w.add_tensor("rope_freqs.weight", (plain / scaled.numpy()).astype(np.float32))
    for name, t in model.state_dict().items():
        a = t.detach().float().numpy().copy()
        if name == "lm_head.weight":
            if cfg.tie_word_embeddings:
                continue
            out = "output.weight"
        elif name == "model.embed_tokens.weight":
            out = "token_embd.weight"
        elif name == "model.norm.weight":
            out = "output_norm.weight"
        else:
            parts = name.split(".")
            layer, rest = parts[2], ".".join(parts[3:])
            out = f"blk.{layer}.{_LAYER[rest]}"
            if arch == "llama" and rest == "self_attn.q_proj.weight":
                a = _llama_cpp_permute(a, heads)
            elif arch == "llama" and rest == "self_attn.k_proj.weight":
                a = _llama_cpp_permute(a, kv_heads)
        kind = _quant_type(quant, out) if a.ndim == 2 else None
        if kind is not None:
            qtype = gguf.GGMLQuantizationType[kind]
            w.add_tensor(out, gguf.quants.quantize(a.astype(np.float32), qtype), raw_dtype=qtype)
        else:
            w.add_tensor(out, a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
