"""Reading a GGUF file: model config, tokenizer and dequantized weights under transformers names."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from gguf.quants import quant_shape_to_byte_shape

from saguaro.models.config import SUPPORTED_ARCHITECTURES, ModelConfig, check_rope_scaling, unsupported
from saguaro.models.gguf_header import TensorInfo, read_header
from saguaro.models.rotary import inverse_frequencies

_LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight", "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.weight": "self_attn.k_proj.weight", "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.weight": "self_attn.v_proj.weight", "attn_v.bias": "self_attn.v_proj.bias",
    "attn_output.weight": "self_attn.o_proj.weight",
    "attn_q_norm.weight": "self_attn.q_norm.weight", "attn_k_norm.weight": "self_attn.k_norm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight", "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_TOP_NAMES = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
              "output.weight": "lm_head.weight"}
_BLOCK = re.compile(r"^blk\.(\d+)\.(.+)$")


class GGUFFile:
    """An opened GGUF file (memory-mapped): metadata, config and tensors."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"GGUF file not found: {self.path}")
        size = self.path.stat().st_size
        try:
            header = read_header(self.path)
        except Exception as e:  # a cut or corrupt header fails in many ways
            raise ValueError(f"{self.path} is truncated or corrupt ({size} bytes), not a readable GGUF file: "
                             f"{type(e).__name__}: {e}") from e
        for t in header.tensors:
            if t.data_offset + t.n_bytes > size:
                raise ValueError(f"{self.path} is truncated: tensor {t.name} ends at byte "
                                 f"{t.data_offset + t.n_bytes} but the file has {size} bytes; "
                                 "re-download or reassemble it")
        #: the tensor table (name, type, shape innermost first, offset, bytes)
        self.tensor_infos: list[TensorInfo] = header.tensors
        #: metadata key -> value (str, int, float, bool or a list of those)
        self.metadata: dict[str, Any] = header.fields
        self._map = np.memmap(self.path, dtype=np.uint8, mode="r")
        self.architecture = str(self.metadata.get("general.architecture", "unknown"))
        self.tensor_names = {t.name for t in self.tensor_infos}

    def data(self, t: TensorInfo) -> np.ndarray:
        """A tensor's bytes in the map, shaped as gguf-py's reader shapes them: float and integer types as
        their values (outermost dimension first), block types as uint8 rows of whole blocks."""
        kind = t.tensor_type
        raw = self._map[t.data_offset:t.data_offset + t.n_bytes]
        dims = tuple(reversed(t.shape))
        if kind.name in _PLAIN_DTYPES:
            return raw.view(_PLAIN_DTYPES[kind.name]).reshape(dims)
        return raw.reshape(quant_shape_to_byte_shape(dims, kind))

    def config(self) -> ModelConfig:
        """ModelConfig from the `{arch}.*` metadata (and the tensors it implies)."""
        arch, m = self.architecture, self.metadata
        if arch not in SUPPORTED_ARCHITECTURES:
            raise unsupported(arch)

        def g(key: str, default: Any = None) -> Any:
            return m.get(f"{arch}.{key}", default)

        heads = int(g("attention.head_count"))
        hidden = int(g("embedding_length"))
        head_dim = int(g("attention.key_length", g("rope.dimension_count", hidden // heads)))
        vocab = g("vocab_size")
        if vocab is None:
            vocab = len(m["tokenizer.ggml.tokens"])
        eos = [int(m[k]) for k in ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id") if k in m]
        bos = m.get("tokenizer.ggml.bos_token_id")
        config = ModelConfig(
            architecture=arch, vocab_size=int(vocab), hidden_size=hidden,
            intermediate_size=int(g("feed_forward_length")), num_layers=int(g("block_count")),
            num_heads=heads, num_kv_heads=int(g("attention.head_count_kv", heads)), head_dim=head_dim,
            rms_norm_eps=float(g("attention.layer_norm_rms_epsilon", 1e-6)),
            rope_theta=float(g("rope.freq_base", 10000.0)), rope_scaling=None,
            max_position_embeddings=int(g("context_length", 4096)),
            tie_word_embeddings="output.weight" not in self.tensor_names,
            attention_bias="blk.0.attn_q.bias" in self.tensor_names,
            qk_norm="blk.0.attn_q_norm.weight" in self.tensor_names,
            eos_token_ids=sorted(set(eos)), bos_token_id=None if bos is None else int(bos),
        )
        if "rope_freqs.weight" in self.tensor_names:
            config.rope_scaling = self._rope_scaling(config)
        return config

    def _rope_scaling(self, config: ModelConfig) -> dict[str, Any]:
        """The RoPE scaling that rope_freqs.weight (llama.cpp's per-frequency divisors of inv_freq) encodes.

        Divisors that match Llama 3 scaling (low/high_freq_factor 1/4, the factor and original context from
        the metadata) give the "llama3" dict, as a Hugging Face config would; any other divisors are kept as
        they are, {"rope_type": "freq_factors", "factors": [...]}, which applies them exactly as llama.cpp does.
        """
        m, arch = self.metadata, self.architecture
        factors = torch.from_numpy(self._dequantized("rope_freqs.weight").copy()).float().flatten()
        freq_factors = {"rope_type": "freq_factors", "factors": [float(f) for f in factors.tolist()]}
        try:
            check_rope_scaling(freq_factors, config.head_dim)
        except ValueError as e:
            raise ValueError(f"{self.path}: bad rope_freqs.weight tensor: {e}") from e
        llama3 = {
            "rope_type": "llama3",
            # from the divisors when the file does not say: they are float32, so 8 reads 8.000001
            "factor": float(m.get(f"{arch}.rope.scaling.factor", round(factors.max().item(), 4))),
            "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": int(m.get(f"{arch}.rope.scaling.original_context_length", 8192)),
        }
        plain = ModelConfig(**{**config.__dict__, "rope_scaling": None})
        scaled = ModelConfig(**{**config.__dict__, "rope_scaling": llama3})
        if torch.allclose(inverse_frequencies(scaled), inverse_frequencies(plain) / factors, rtol=1e-3):
            return llama3
        return freq_factors

    def _dequantized(self, name: str) -> np.ndarray:
        from gguf import quants

        t = next(t for t in self.tensor_infos if t.name == name)
        return quants.dequantize(self.data(t), t.tensor_type)

    def tensors(self, config: ModelConfig) -> Iterator[tuple[str, torch.Tensor]]:
        """(transformers name, float32 tensor) for every weight, dequantized, q/k un-permuted for llama."""
        for t in self.tensor_infos:
            if t.name == "rope_freqs.weight":
                continue
            name = _hf_name(t.name)
            yield name, self._dense(t.name, name, config)

    def _dense(self, gguf_name: str, name: str, config: ModelConfig) -> torch.Tensor:
        """One weight dequantized to float32, its rows in transformers' order."""
        w = self._dequantized(gguf_name)
        heads = self._permuted_heads(name, config)
        if heads:
            w = _unpermute(w, heads)
        return torch.from_numpy(np.array(w, dtype=np.float32, order="C"))

    def _permuted_heads(self, name: str, config: ModelConfig) -> int:
        """llama.cpp's converter interleaves the rotary halves of llama's q and k rows: the head count to
        put them back with (0: the rows are as transformers has them)."""
        if self.architecture != "llama":
            return 0
        if name.endswith("q_proj.weight"):
            return config.num_heads
        if name.endswith("k_proj.weight"):
            return config.num_kv_heads
        return 0

    def quantized_tensors(self, config: ModelConfig) -> Iterator[tuple[str, Any]]:
        """(transformers name, weight) for every weight, keeping matrices in a format the quantized kernels
        run (Q4_K, Q6_K, Q5_0, Q8_0) as a QuantWeight over the memory-mapped file's bytes (no copy); other
        tensors (norms, biases, F32/F16 matrices) come dequantized as float32 tensors."""
        import warnings

        from saguaro.kernels import quant
        from saguaro.models.quant_linear import QuantWeight

        for t in self.tensor_infos:
            if t.name == "rope_freqs.weight":
                continue
            name = _hf_name(t.name)
            kind = t.tensor_type.name
            if kind in quant.GGML_TYPES and len(t.shape) == 2:
                rows, k = int(t.shape[1]), int(t.shape[0])
                data = self.data(t).reshape(rows, -1)
                heads = self._permuted_heads(name, config)
                if heads:
                    data = np.ascontiguousarray(_unpermute(data, heads))  # a row permutation: blocks stay whole
                with warnings.catch_warnings():  # the map is read-only and is never written through
                    warnings.simplefilter("ignore", UserWarning)
                    blocks = torch.from_numpy(data)
                if heads:  # a copy: no file pages to release
                    yield name, QuantWeight.from_blocks(blocks, kind, rows, k)
                else:
                    yield name, self._chunked(blocks, kind, rows, k, int(t.data_offset))
                continue
            yield name, self._dense(t.name, name, config)

    def _chunked(self, blocks: torch.Tensor, kind: str, rows: int, k: int, offset: int) -> Any:
        """A large mapped matrix as row segments of at most _CHUNK_BYTES (multiples of 16 rows), each
        with its own page releaser: repacking then holds one chunk's file pages at a time beside the
        copies, not the whole matrix's (the heads: 145-191 MB)."""
        from saguaro.models.quant_linear import QuantWeight

        row_bytes = blocks.shape[1]
        per = max(16, _CHUNK_BYTES // row_bytes // 16 * 16)
        if rows <= per or rows % 16:
            return QuantWeight.from_blocks(blocks, kind, rows, k, self._page_releaser(offset, rows * row_bytes))
        parts = []
        for r0 in range(0, rows, per):
            n = min(per, rows - r0)
            parts.append(QuantWeight.from_blocks(blocks[r0:r0 + n], kind, n, k,
                                                 self._page_releaser(offset + r0 * row_bytes, n * row_bytes)))
        return QuantWeight.cat(parts)

    def release_pages(self) -> None:
        """Drops every page of the mapped file from this process's resident set (best effort, as
        _page_releaser): they stay in the page cache and come back on the next access."""
        release = self._page_releaser(0, self.path.stat().st_size)
        if release is not None:
            release()

    def _page_releaser(self, offset: int, nbytes: int) -> Any:
        """A callable that drops the mapped file's pages of [offset, offset + nbytes) from this process's
        resident set (madvise DONTNEED: the read-only map re-reads them from the page cache on the next
        access, so it is always safe); None where the map or madvise is not available."""
        import mmap

        raw = getattr(self._map, "_mmap", None)
        if raw is None or not hasattr(raw, "madvise") or not hasattr(mmap, "MADV_DONTNEED"):
            return None
        start = offset - offset % mmap.PAGESIZE

        def release() -> None:
            try:
                raw.madvise(mmap.MADV_DONTNEED, start, offset + nbytes - start)
            except (OSError, ValueError):  # best effort: the pages then stay until evicted
                pass

        return release


#: numpy dtypes of the GGML types whose values are stored plainly (GGUFFile.data)
_PLAIN_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I8": np.int8, "I16": np.int16,
                 "I32": np.int32, "I64": np.int64}
#: the largest mapped row segment of a repacked matrix (GGUFFile._chunked)
_CHUNK_BYTES = 32 << 20


def _hf_name(name: str) -> str:
    if name in _TOP_NAMES:
        return _TOP_NAMES[name]
    m = _BLOCK.match(name)
    if m is None or m.group(2) not in _LAYER_NAMES:
        raise NotImplementedError(f"unexpected GGUF tensor {name!r}: this layout is not supported")
    return f"model.layers.{m.group(1)}.{_LAYER_NAMES[m.group(2)]}"


def _unpermute(w: np.ndarray, heads: int) -> np.ndarray:
    half = w.shape[0] // heads // 2
    return w.reshape(heads, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
