"""The native decoder-only model: embedding, decoder layers, final norm and output head."""
from __future__ import annotations

from typing import Callable, Mapping

import torch
import torch.nn.functional as F

from saguaro.models.attention import Attention, AttentionGroup
from saguaro.models.config import ModelConfig
from saguaro.models.decoder_chain import DecoderChain
from saguaro.models.linear import Linear, linear_class
from saguaro.models.mlp import MLP
from saguaro.models.norm import RMSNorm
from saguaro.models.quant_linear import QuantLinear, QuantWeight
from saguaro.models.rotary import RotaryTable


class DecoderLayer:
    """Pre-norm residual block: x + attn(norm(x)), then x + mlp(norm(x)).

    Each residual add is computed with the norm that reads its sum (RMSNorm.add_and_norm: one extension
    call on a bf16 CPU model), so a layer takes the normed input along with x and returns the next norm's."""

    def __init__(self, attn_norm: RMSNorm, attention: Attention, mlp_norm: RMSNorm, mlp: MLP) -> None:
        self.attn_norm = attn_norm
        self.attention = attention
        self.mlp_norm = mlp_norm
        self.mlp = mlp

    def __call__(self, x: torch.Tensor, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                 groups: list[AttentionGroup], next_norm: RMSNorm | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x the residual stream and h = attn_norm(x); returns the block's output and next_norm of it (None
        when next_norm is None)."""
        x, h = self.mlp_norm.add_and_norm(x, self.attention(h, cos, sin, groups))
        delta = self.mlp(h)
        if next_norm is None:
            return x + delta, None
        return next_norm.add_and_norm(x, delta)


class DecoderModel:
    """A Qwen2 / Qwen3 / Llama 3 / SmolLM2 decoder with weights in one dtype on one device.

    Build it with `from_state_dict` (transformers parameter names). It holds no per-sequence
    state: the KV slots belong to the adapter that runs it.
    """

    def __init__(self, config: ModelConfig, embed: torch.Tensor | QuantWeight | None, layers: list[DecoderLayer],
                 final_norm: RMSNorm, head: Linear, dtype: torch.dtype, device: torch.device) -> None:
        """embed None: the input embedding is the head's weight (tied), looked up from its packed rows;
        a QuantWeight: GGUF blocks, dequantized row by row at lookup."""
        self.config = config
        self._embed = embed
        self.layers = layers
        self.final_norm = final_norm
        self.head = head
        self.dtype = dtype
        self.device = device
        # a GGUF model's decodes, verifications and tree steps on the CPU: all layers in one extension call
        self.chain = DecoderChain.build(layers, dtype, device)

    @classmethod
    def from_state_dict(cls, config: ModelConfig, tensors: Mapping[str, torch.Tensor],
                        *, dtype: torch.dtype = torch.bfloat16, device: str | torch.device = "cpu",
                        int8: bool | str = False) -> "DecoderModel":
        """Build from transformers-named weights (`model.layers.N.self_attn.q_proj.weight`, ...).

        `tensors` is any mapping name -> tensor (a lazy one lets loaders stream from safetensors).
        Stacked `self_attn.qkv_proj.*` and `mlp.gate_up_proj.weight` are used as they are when present.
        int8=True (or "weight") stores the layer projections and the output head as weight-only int8;
        int8="dynamic" also quantizes their inputs at each call (saguaro.models.linear.DynamicInt8Linear).
        Drafts only: it changes the draft's distribution, so acceptance, never the output.
        Values that are QuantWeight (GGUF blocks, GGUFFile.quantized_tensors) become QuantLinear
        projections on those blocks (int8 does not apply to them); the embedding, when quantized, is
        dequantized row by row at lookup.
        """
        device = torch.device(device)
        def has(name: str) -> bool:
            return name in tensors

        def t(name: str) -> torch.Tensor | QuantWeight:
            v = tensors[name]
            if isinstance(v, QuantWeight):
                if device.type != "cpu":
                    raise ValueError(f"quantized GGUF weights run on the CPU only, not on {device}: load with "
                                     "quantized=False for this device")
                return v
            # vectors (norms, biases) are copied: a view of a loader's memory-mapped file would keep that
            # whole mapping, with every page the load read, resident beside the packed projections
            return v.to(device=device, dtype=dtype, copy=v.dim() < 2)

        def fused(name: str, parts: list[str]) -> torch.Tensor | QuantWeight:
            # a conversion cache stores [q; k; v] and [gate; up] already stacked: no copy at load time
            if has(name):
                return t(name)
            ws = [t(p) for p in parts]
            if any(isinstance(w, QuantWeight) for w in ws):
                if not all(isinstance(w, QuantWeight) for w in ws):
                    raise ValueError(f"{name}: cannot fuse quantized and plain weights {parts}")
                return QuantWeight.cat(ws)
            return torch.cat(ws, 0)

        plain = linear_class(int8)

        def lin(w: torch.Tensor | QuantWeight, b: torch.Tensor | None = None) -> Linear | QuantLinear:
            return QuantLinear(w, b) if isinstance(w, QuantWeight) else plain(w, b)
        c = config
        layers = []
        for i in range(c.num_layers):
            p = f"model.layers.{i}."
            a = p + "self_attn."
            qkv_w = fused(a + "qkv_proj.weight", [a + "q_proj.weight", a + "k_proj.weight", a + "v_proj.weight"])
            qkv_b = None
            if has(a + "qkv_proj.bias") or has(a + "q_proj.bias"):
                qkv_b = fused(a + "qkv_proj.bias", [a + "q_proj.bias", a + "k_proj.bias", a + "v_proj.bias"])
            q_norm = k_norm = None
            if c.qk_norm:
                q_norm = RMSNorm(t(a + "q_norm.weight"), c.rms_norm_eps)
                k_norm = RMSNorm(t(a + "k_norm.weight"), c.rms_norm_eps)
            o_b = t(a + "o_proj.bias") if has(a + "o_proj.bias") else None
            attention = Attention(i, lin(qkv_w, qkv_b), lin(t(a + "o_proj.weight"), o_b), c.num_heads,
                                  c.num_kv_heads, c.head_dim, q_norm, k_norm)
            m = p + "mlp."
            gate_up = fused(m + "gate_up_proj.weight", [m + "gate_proj.weight", m + "up_proj.weight"])
            mlp = MLP(lin(gate_up), lin(t(m + "down_proj.weight")))
            layers.append(DecoderLayer(RMSNorm(t(p + "input_layernorm.weight"), c.rms_norm_eps), attention,
                                       RMSNorm(t(p + "post_attention_layernorm.weight"), c.rms_norm_eps), mlp))
        embed = t("model.embed_tokens.weight")
        if isinstance(embed, torch.Tensor):
            embed = embed.contiguous()
        tied = not (has("lm_head.weight") and not c.tie_word_embeddings)
        # int8 drafts quantize the head too (a separate copy when tied): it is the largest single matmul
        # of a Qwen draft, and the draft's q may be any distribution as long as it is the one reported.
        head = lin(embed if tied else t("lm_head.weight"))
        if tied and (head.packed is not None or isinstance(head, QuantLinear)):
            embed = None  # lookups read the packed (or quantized) head's rows: one copy of the largest matrix
        elif (not tied and isinstance(embed, torch.Tensor)
              and embed.data_ptr() == tensors["model.embed_tokens.weight"].data_ptr()):
            embed = embed.clone()  # the model's own copy, not a view of the loader's file (see t)
        return cls(c, embed, layers, RMSNorm(t("model.norm.weight"), c.rms_norm_eps), head, dtype, device)

    @property
    def embed(self) -> torch.Tensor:
        """The input embedding [vocab, hidden] (for a tied packed head: unpacked on first use; a quantized
        one: dequantized at each access)."""
        if isinstance(self._embed, QuantWeight):
            return self._embed.dequantize().to(self.dtype)
        return self._embed if self._embed is not None else self.head.weight

    def _lookup(self, tokens: torch.Tensor) -> torch.Tensor:
        if self._embed is None:
            return self.head.rows(tokens).to(self.dtype)
        if isinstance(self._embed, QuantWeight):
            return self._embed.rows(tokens).to(device=self.device, dtype=self.dtype)
        return F.embedding(tokens, self._embed)

    def rotary(self, capacity: int) -> RotaryTable:
        """A cos/sin table for positions below `capacity`."""
        return RotaryTable(self.config, capacity, self.dtype, self.device)

    def forward(self, tokens: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                groups: list[AttentionGroup], logit_rows: torch.Tensor | None = None,
                head: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """Run flat tokens [N] (grouped by sequence) and return float32 logits of logit_rows (all if None).

        head: computes the logits from the final-normed hidden states instead of the output head
        (a pruned draft vocabulary, see saguaro.models.draft_vocabulary)."""
        x = self._lookup(tokens)
        if self.chain is not None and self.chain.applies(x, cos, groups):
            x = x.contiguous()
            h = self.chain.run(x, cos, sin, groups, self.final_norm if logit_rows is None else None)
            if h is None:
                h = self.final_norm(x.index_select(0, logit_rows))
            return head(h) if head is not None else self.head.forward_float(h)
        layers = self.layers
        # the last layer's residual add goes with the final norm unless only some rows are kept
        last_norm = self.final_norm if logit_rows is None else None
        h = layers[0].attn_norm(x) if layers else None
        for i, layer in enumerate(layers):
            x, h = layer(x, h, cos, sin, groups, layers[i + 1].attn_norm if i + 1 < len(layers) else last_norm)
        if h is None or logit_rows is not None:
            h = self.final_norm(x if logit_rows is None else x.index_select(0, logit_rows))
        return head(h) if head is not None else self.head.forward_float(h)

