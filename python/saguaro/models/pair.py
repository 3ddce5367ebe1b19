"""load_pair: a target and a draft that can speculate together, loaded and checked once.

A pair must share one vocabulary (the draft proposes token ids the target verifies), and each model
keeps its own KV cache, so the two may not be one adapter object. The usable context is the smaller
of the two.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import torch

from saguaro.models.loading import LoadedModel, default_pair, load, restrict_draft_vocabulary
from saguaro.models.vocab import check_vocab_compatible


@dataclass
class ModelPair:
    """A loaded target, its draft (None in mode "ar") and what the request layer reads from them."""

    target: LoadedModel
    draft: Optional[LoadedModel]
    #: tokens a sequence may hold: the smaller context of the two models
    max_context: int
    #: the target's end-of-sequence ids (the engine sends them with each request, see ignore_eos)
    eos_token_ids: list[int]

    @property
    def tokenizer(self) -> Any:
        """The target's tokenizer (None for a model loaded without one)."""
        return self.target.tokenizer


def _is_loaded(spec: Any) -> bool:
    return hasattr(spec, "adapter") and hasattr(spec, "tokenizer")


def _load_model(spec: Any, *, dtype: torch.dtype, device: str, role: str,
                int8: Union[bool, str, None] = False, quantized: Optional[bool] = None) -> Any:
    """A LoadedModel for spec (an already loaded one passes through)."""
    if _is_loaded(spec):
        if int8:
            raise ValueError(f"draft_int8={int8!r} applies when the engine loads the {role} itself; this one is "
                             f"already loaded: pass int8= to saguaro.models.load instead")
        if quantized:
            raise ValueError(f"quantized=True applies when the engine loads the {role} itself; this one is "
                             f"already loaded: pass quantized=True to saguaro.models.load instead")
        return spec
    return load(spec, dtype=dtype, device=device, int8=int8 or False, quantized=quantized)


def _check_tokenizers(target_tokenizer: Any, draft_tokenizer: Any) -> None:
    check_vocab_compatible(target_tokenizer, draft_tokenizer)


def check_pair(target: Any, draft: Any) -> None:
    """The draft can speculate for the target: two adapter objects over one vocabulary."""
    if draft.adapter is target.adapter:
        raise ValueError("the target and the draft are the same model instance; each keeps its own KV cache, "
                         "so load the model twice (or pass the same preset name or path twice)")
    tv, dv = target.adapter.vocab_size, draft.adapter.vocab_size
    if tv != dv:
        raise ValueError(f"the target's vocabulary has {tv} entries but the draft's {dv}: the draft must "
                         f"share the target's tokenizer (pick a draft of the same model family)")
    if target.tokenizer is not None and draft.tokenizer is not None:
        _check_tokenizers(target.tokenizer, draft.tokenizer)


def load_pair(target: Any = None, draft: Any = None, *, mode: str = "ssd", dtype: torch.dtype = torch.bfloat16,
              device: str = "cpu", draft_int8: Union[bool, str, None] = False,
              draft_vocab: Union[int, Sequence[int], None] = None, quantized: Optional[bool] = None,
              draft_device: Optional[str] = None) -> ModelPair:
    """Load (or take) a target and, unless mode is "ar", a draft; check that they pair.

    ``target``/``draft``: anything ``saguaro.models.load`` takes, or an already loaded model; both
    None: the default pair. ``quantized``: True: models this call loads from a preset or .gguf file keep the
    GGUF's quantized blocks (``saguaro.models.load(quantized=True)``; an int8 draft stays int8); None:
    where ``saguaro.models.runs_quantized`` says so; False: never.
    ``draft_int8`` and ``draft_vocab`` shape a draft this call loads (see
    ``saguaro.Engine``); ``draft_device`` puts it on another device than the target (default: ``device``). Raises ValueError saying what to change when the two cannot pair.
    """
    if target is None:
        default_target, default_draft = default_pair()
        target = default_target
        if draft is None and mode != "ar":
            draft = default_draft
    if draft is None and mode != "ar":
        raise ValueError(f"mode {mode!r} needs a draft model: pass draft=... (a model sharing the "
                         f"target's tokenizer) or use mode='ar' for the target alone")
    loaded_target = _load_model(target, dtype=dtype, device=device, role="target", quantized=quantized)
    loaded_draft = None
    if mode != "ar":
        loaded_draft = _load_model(draft, dtype=dtype, device=draft_device or device, role="draft", int8=draft_int8,
                                   quantized=quantized and not draft_int8)
        check_pair(loaded_target, loaded_draft)
        if draft_vocab is not None:
            restrict_draft_vocabulary(loaded_draft, draft_vocab)
    max_context = int(loaded_target.adapter.max_context)
    if loaded_draft is not None:
        max_context = min(max_context, int(loaded_draft.adapter.max_context))
    eos = [int(t) for t in (getattr(loaded_target.adapter, "eos_token_ids", None) or [])]
    return ModelPair(target=loaded_target, draft=loaded_draft, max_context=max_context, eos_token_ids=eos)
