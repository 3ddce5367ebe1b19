"""Checking that a target and a draft share one vocabulary (speculation compares token ids)."""
from __future__ import annotations

from typing import Any


def _tokenizer_of(x: Any) -> Any:
    return getattr(x, "tokenizer", x) if not hasattr(x, "backend") else x


def check_vocab_compatible(target_tok: Any, draft_tok: Any) -> None:
    """Raise ValueError unless the two tokenizers map every id to the same token.

    Accepts `saguaro.models.Tokenizer` objects or `LoadedModel`s (whose adapters' logits widths
    must then also agree). The message gives both sizes and the first differing token id.
    """
    ta, da = getattr(target_tok, "adapter", None), getattr(draft_tok, "adapter", None)
    if ta is not None and da is not None and ta.vocab_size != da.vocab_size:
        raise ValueError(f"target and draft logits widths differ: target vocab_size {ta.vocab_size}, "
                         f"draft vocab_size {da.vocab_size}; the draft must share the target's vocabulary")
    t, d = _tokenizer_of(target_tok), _tokenizer_of(draft_tok)
    if t is None or d is None:
        raise ValueError("check_vocab_compatible needs both tokenizers (a model loaded without one has none)")
    tv = {i: s for s, i in t.backend.get_vocab(with_added_tokens=True).items()}
    dv = {i: s for s, i in d.backend.get_vocab(with_added_tokens=True).items()}
    for i in range(max(len(tv), len(dv))):
        if tv.get(i) != dv.get(i):
            raise ValueError(f"target and draft vocabularies differ: target has {len(tv)} tokens, draft has "
                             f"{len(dv)}; first difference at id {i}: target {tv.get(i)!r} vs draft {dv.get(i)!r}")
