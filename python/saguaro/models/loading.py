"""saguaro.models.load: one entry point from a preset name, a path or a model object to an adapter."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Sequence

import torch

from saguaro.models.callable_adapter import CallableAdapter
from saguaro.models.config import ModelConfig
from saguaro.models.convert import convert_gguf, converted_directory
from saguaro.models.decoder import DecoderModel
from saguaro.models.hf_adapter import HFModelAdapter
from saguaro.models.hf_directory import read_directory
from saguaro.models.linear import linear_class
from saguaro.models.native_adapter import NativeModelAdapter
from saguaro.models.presets import DEFAULT_DRAFT, DEFAULT_TARGET, PRESETS, preset_gguf
from saguaro.models.tokenizer import Tokenizer


@dataclasses.dataclass
class LoadedModel:
    """An adapter ready for the runtime, plus what the API layer needs around it."""

    adapter: Any                   # a ModelAdapter
    tokenizer: Tokenizer | None    # None for bare model objects / callables
    name: str
    config: ModelConfig | None = None
    #: True when the matrices run as GGUF blocks on the quantized kernels (load(quantized=True))
    quantized: bool = False


def default_pair() -> tuple[str, str]:
    """(target, draft) preset names of the default real pair: Qwen2.5-Coder 1.5B / 0.5B."""
    return DEFAULT_TARGET, DEFAULT_DRAFT


def load(spec: Any, *, dtype: torch.dtype = torch.bfloat16, device: str | torch.device = "cpu",
         max_context: int | None = None, int8: bool | str = False, scratch_tokens: int | None = None,
         num_threads: int | None = None, tokenizer: Tokenizer | None = None, name: str | None = None,
         draft_vocab: int | Sequence[int] | None = None, quantized: bool | None = False) -> LoadedModel:
    """Load `spec` as a LoadedModel.

    spec: a preset name (see `PRESETS`), a Hugging Face directory, a `.gguf` file, a native
    `DecoderModel`, a transformers PreTrainedModel, a torch.jit.ScriptModule or a plain callable
    fn(tokens[B, T]) -> logits[B, T, V]. GGUF files are dequantized once into $SAGUARO_CACHE.
    int8=True (or "weight") quantizes the native model's projections and head to weight-only int8;
    int8="dynamic" quantizes their inputs too, at each call (int8 multiply-adds: the cheapest multi-row
    draft forward on AVX2 CPUs). Drafts only: it changes acceptance, never the output.
    max_context / scratch_tokens / num_threads go to NativeModelAdapter.
    draft_vocab (drafts only): score only these ids, or the `draft_vocab` lowest ones, plus special
    tokens and each prompt's tokens (see `restrict_draft_vocabulary`); native models only.
    quantized=True (a preset or a .gguf file, CPU only): keep the GGUF's Q4_K / Q6_K / Q5_0 / Q8_0
    matrices in their own formats, memory-mapped from the file (no conversion, no copy), and run them with
    saguaro's quantized kernels (saguaro.models.quant_linear); norms and biases are dequantized, the
    embedding row by row at lookup. The model is then the GGUF model with int8 activation blocks, as
    llama.cpp computes it; `dtype` is the activations' dtype between the projections.
    quantized=None: quantized=True where `runs_quantized` says the GGUF's blocks are the faster model on
    this CPU, the dequantized `dtype` model otherwise (the API's and the CLI's default).
    """
    linear_class(int8)  # a bad int8 value fails before anything loads
    if quantized is None:
        quantized = runs_quantized(spec, dtype=dtype, device=device, int8=int8)
    if quantized:
        if not isinstance(spec, (str, os.PathLike)):
            raise ValueError(f"quantized=True loads a preset or a .gguf file, not a {type(spec).__name__}")
        if torch.device(device).type != "cpu":
            raise ValueError(f"quantized=True runs on the CPU only, not on {device}")
        loaded = _load_quantized(spec, dtype=dtype, int8=int8, max_context=max_context,
                                 scratch_tokens=scratch_tokens, num_threads=num_threads, name=name)
        if draft_vocab is not None:
            restrict_draft_vocabulary(loaded, draft_vocab)
        return loaded
    loaded = _load(spec, dtype=dtype, device=device, max_context=max_context, int8=int8,
                   scratch_tokens=scratch_tokens, num_threads=num_threads, tokenizer=tokenizer, name=name)
    if draft_vocab is not None:
        restrict_draft_vocabulary(loaded, draft_vocab)
    return loaded


def runs_quantized(spec: Any, *, dtype: torch.dtype = torch.bfloat16, device: str | torch.device = "cpu",
                   int8: bool | str = False) -> bool:
    """Whether ``load(spec, quantized=None)`` keeps the GGUF's quantized blocks.

    Yes when all of these hold: `spec` is a preset or a .gguf file that is there; every quantized matrix
    in it is in a format the quantized kernels run (Q4_K, Q6_K, Q5_0, Q8_0; a Q4_1 file such as
    SmolLM2-135M's is dequantized); the model runs on the CPU in bf16 (another dtype asks for that
    model: fp32 weights, say); no int8 is asked for; and the CPU has the kernels' SIMD paths (AVX2 or
    AVX-512). Then the model computed is the GGUF model as llama.cpp computes it, two to three times
    as fast as its bf16 conversion in a fifth of the memory (bench/results/quick-start-*.md). Otherwise
    the GGUF is dequantized to `dtype`. Never raises: a missing or unreadable file is left to the load
    that follows, which says what is wrong.
    """
    if int8 or dtype != torch.bfloat16 or not isinstance(spec, (str, os.PathLike)):
        return False
    try:
        if torch.device(device).type != "cpu":
            return False
        from saguaro.kernels import quant

        if not quant.available() or quant.supported_isa() == "scalar":
            return False
        s = os.fspath(spec)
        if s in PRESETS:
            path = preset_gguf(PRESETS[s])
        else:
            path = Path(s).expanduser()
            if path.suffix.lower() != ".gguf" or not path.is_file():
                return False
        from saguaro.models.gguf_header import tensor_types

        blocks = {kind for kind, dims in tensor_types(path).values() if dims == 2} - {"F32", "F16", "BF16"}
    except Exception:  # noqa: BLE001 - the load that follows reports the problem with its own message
        return False
    return bool(blocks) and blocks <= set(quant.GGML_TYPES)


def restrict_draft_vocabulary(loaded: LoadedModel, draft_vocab: int | Sequence[int] | None) -> None:
    """Prune a loaded DRAFT model's output vocabulary (NativeModelAdapter.restrict_vocabulary), keeping
    its tokenizer's special tokens; ValueError for a model that is not native."""
    restrict = getattr(loaded.adapter, "restrict_vocabulary", None)
    if restrict is None:
        raise ValueError(f"draft_vocab needs a native saguaro draft model (a preset, a model directory or a .gguf "
                         f"file); {loaded.name!r} is a {type(loaded.adapter).__name__}")
    always = loaded.tokenizer.special_token_ids() if loaded.tokenizer is not None else []
    restrict(draft_vocab, always=always)


def _load(spec: Any, *, dtype: torch.dtype, device: str | torch.device, max_context: int | None, int8: bool | str,
          scratch_tokens: int | None, num_threads: int | None, tokenizer: Tokenizer | None,
          name: str | None) -> LoadedModel:
    native_kw: dict[str, Any] = {"max_context": max_context, "num_threads": num_threads}
    if scratch_tokens is not None:
        native_kw["scratch_tokens"] = scratch_tokens
    if isinstance(spec, (str, os.PathLike)):
        return _load_named(spec, dtype, device, int8, native_kw, name)
    if int8:
        raise ValueError(f"int8={int8!r} applies when saguaro builds the model from its files (a preset, a model "
                         f"directory or a .gguf file), not to an already built {type(spec).__name__}")
    if isinstance(spec, DecoderModel):
        return LoadedModel(NativeModelAdapter(spec, **native_kw), tokenizer, name or "native", spec.config)
    if _is_transformers_model(spec):
        adapter = HFModelAdapter(spec, max_context=max_context)
        return LoadedModel(adapter, tokenizer, name or type(spec).__name__, None)
    if isinstance(spec, torch.jit.ScriptModule) or callable(spec):
        adapter = CallableAdapter(spec, max_context=max_context or 4096, device=device)
        return LoadedModel(adapter, tokenizer, name or getattr(spec, "__name__", type(spec).__name__), None)
    raise TypeError(f"cannot load a {type(spec).__name__}: pass a preset name ({', '.join(PRESETS)}), a model "
                    "directory, a .gguf file, a native DecoderModel, a transformers model, a TorchScript module "
                    "or a callable")


def _load_quantized(spec: str | os.PathLike, *, dtype: torch.dtype, int8: bool | str, max_context: int | None,
                    scratch_tokens: int | None, num_threads: int | None, name: str | None) -> LoadedModel:
    """A preset or .gguf file with its quantized matrices kept as GGUF blocks (load(quantized=True))."""
    from saguaro.models.gguf_file import GGUFFile

    s = os.fspath(spec)
    if s in PRESETS:
        path, name = preset_gguf(PRESETS[s]), name or s
    else:
        path = Path(s).expanduser()
        if path.is_dir() or path.suffix.lower() != ".gguf":
            raise ValueError(f"quantized=True needs a preset ({', '.join(PRESETS)}) or a .gguf file, got {s!r}")
        if not path.is_file():
            raise FileNotFoundError(f"model path not found: {s}")
        name = name or path.stem
    g = GGUFFile(path)
    config = g.config()
    tok = Tokenizer.from_gguf_metadata(g.metadata)
    weights = dict(g.quantized_tensors(config))
    model = DecoderModel.from_state_dict(config, weights, dtype=dtype, device="cpu", int8=int8)
    del weights
    g.release_pages()  # what building the model touched and no copy replaced (row lookups re-read them)
    native_kw: dict[str, Any] = {"max_context": max_context, "num_threads": num_threads}
    if scratch_tokens is not None:
        native_kw["scratch_tokens"] = scratch_tokens
    eos = tok.eos_token_ids if tok is not None and tok.eos_token_ids else config.eos_token_ids
    return LoadedModel(NativeModelAdapter(model, eos_token_ids=eos, **native_kw), tok, name, config, quantized=True)


def _is_transformers_model(obj: Any) -> bool:
    try:
        from transformers import PreTrainedModel
    except ImportError:
        return False
    return isinstance(obj, PreTrainedModel)


def _load_named(spec: str | os.PathLike, dtype: torch.dtype, device: Any, int8: bool | str,
                native_kw: dict[str, Any], name: str | None) -> LoadedModel:
    s = os.fspath(spec)
    if s in PRESETS:
        preset = PRESETS[s]
        if preset.sha256 is not None:
            out = converted_directory(Path(preset.file_name), dtype, key=preset.sha256[:12])
            if not out.is_dir():
                gguf = preset_gguf(preset)
                return _from_gguf(gguf, out, dtype, device, int8, native_kw, name or s)
            return _from_directory(out, dtype, device, int8, native_kw, name or s)
        gguf = preset_gguf(preset)
        return _from_gguf(gguf, converted_directory(gguf, dtype), dtype, device, int8, native_kw, name or s)
    path = Path(s).expanduser()
    if path.is_dir():
        return _from_directory(path, dtype, device, int8, native_kw, name or path.name)
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ValueError(f"cannot load {path}: expected a .gguf file or a model directory "
                             "(config.json + *.safetensors)")
        return _from_gguf(path, converted_directory(path, dtype), dtype, device, int8, native_kw, name or path.stem)
    if os.sep in s or "/" in s or s.lower().endswith(".gguf") or s.startswith((".", "~")):
        raise FileNotFoundError(f"model path not found: {s}")
    raise ValueError(f"unknown model preset {s!r}: known presets are {', '.join(PRESETS)} "
                     "(or pass a model directory or a .gguf file path)")


def _from_directory(d: Path, dtype: torch.dtype, device: Any, int8: bool | str, native_kw: dict[str, Any],
                    name: str) -> LoadedModel:
    model, tok, config = read_directory(d, dtype=dtype, device=device, int8=int8)
    eos = tok.eos_token_ids if tok is not None and tok.eos_token_ids else config.eos_token_ids
    return LoadedModel(NativeModelAdapter(model, eos_token_ids=eos, **native_kw), tok, name, config)


def _from_gguf(gguf: Path, out: Path, dtype: torch.dtype, device: Any, int8: bool | str, native_kw: dict[str, Any],
               name: str) -> LoadedModel:
    if out.is_dir():
        return _from_directory(out, dtype, device, int8, native_kw, name)
    weights = convert_gguf(gguf, out, dtype)
    config = ModelConfig.from_json_file(out / "config.json")
    tok = Tokenizer.from_directory(out)
    model = DecoderModel.from_state_dict(config, weights, dtype=dtype, device=device, int8=int8)
    del weights
    eos = tok.eos_token_ids if tok is not None and tok.eos_token_ids else config.eos_token_ids
    return LoadedModel(NativeModelAdapter(model, eos_token_ids=eos, **native_kw), tok, name, config)
