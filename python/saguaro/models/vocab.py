"""Checking that a target and a draft share one vocabulary (speculation compares token ids)."""
from __future__ import annotations

from typing import Any, Optional, Sequence


def _tokenizer_of(x: Any) -> Any:
    return getattr(x, "tokenizer", x) if not hasattr(x, "backend") else x


def vocab_table(tokenizer: Any) -> list[Optional[str]]:
    """The token string of every id (None for an id the tokenizer does not name), in id order: what a
    draft in another process compares with its target's (``saguaro.distributed``)."""
    by_id = {i: s for s, i in _tokenizer_of(tokenizer).backend.get_vocab(with_added_tokens=True).items()}
    return [by_id.get(i) for i in range(max(by_id) + 1 if by_id else 0)]


def first_difference(target: Sequence[Optional[str]], draft: Sequence[Optional[str]]) -> Optional[str]:
    """None when the two vocabulary tables agree, else a message with both sizes and the first
    differing id."""
    for i in range(max(len(target), len(draft))):
        t = target[i] if i < len(target) else None
        d = draft[i] if i < len(draft) else None
        if t != d:
            return (f"target and draft vocabularies differ: target has {len(target)} tokens, draft has "
                    f"{len(draft)}; first difference at id {i}: target {t!r} vs draft {d!r}")
    return None


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
    problem = first_difference(vocab_table(t), vocab_table(d))
    if problem:
        raise ValueError(problem)
