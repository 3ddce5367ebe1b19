"""Prompt normalisation: strings, token-id lists and chat message lists become token ids."""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Sequence, Union

Message = dict
PromptInput = Union[str, Sequence[int], Sequence[Message]]


@dataclass
class Prompt:
    """One prompt as given (``original``) and as the target sees it (``token_ids``)."""

    original: Any
    token_ids: list[int]


def _is_token_list(x: Any) -> bool:
    return isinstance(x, Sequence) and not isinstance(x, (str, bytes)) and len(x) > 0 and all(
        isinstance(t, numbers.Integral) and not isinstance(t, bool) for t in x)


def _is_messages(x: Any) -> bool:
    return isinstance(x, Sequence) and not isinstance(x, (str, bytes)) and len(x) > 0 and all(
        isinstance(m, dict) for m in x)


def _as_list(x: Any) -> Any:
    # torch tensors and numpy arrays of token ids
    if hasattr(x, "tolist") and not isinstance(x, (str, bytes, list, tuple)):
        return x.tolist()
    return x


def split_prompts(prompts: Any) -> list[Any]:
    """The individual prompts of ``generate``'s argument: one string, token-id list or message list,
    or a list of them."""
    prompts = _as_list(prompts)
    if isinstance(prompts, str) or _is_token_list(prompts) or _is_messages(prompts):
        return [prompts]
    if isinstance(prompts, Sequence) and not isinstance(prompts, bytes):
        if len(prompts) == 0:
            raise ValueError("no prompts given: pass a string, a list of token ids, a chat message list "
                             "or a list of those")
        return [_as_list(p) for p in prompts]
    raise ValueError(f"prompts must be a string, a list of token ids, a list of chat messages "
                     f"({{'role': ..., 'content': ...}}) or a list of those, got {type(prompts).__name__}")


def check_messages(messages: Sequence[Message], index: int) -> None:
    """Every message has a string role and string content."""
    for j, m in enumerate(messages):
        if not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise ValueError(f"prompt {index}: chat message {j} must be a dict with string 'role' and "
                             f"'content', got {m!r}")
    if all(m["content"] == "" for m in messages):
        raise ValueError(f"prompt {index} is empty: every chat message has empty content")


def encode_prompt(prompt: Any, tokenizer: Any, vocab_size: int, *, chat: bool, index: int) -> Prompt:
    """Token ids of one prompt. A string is encoded as is, or (chat=True) as one user message put
    through the model's chat template; a message list always goes through the chat template."""
    if tokenizer is None and not _is_token_list(prompt):
        raise ValueError(f"prompt {index}: this model was loaded without a tokenizer, so prompts must be lists "
                         f"of token ids")
    if isinstance(prompt, str):
        if prompt == "":
            raise ValueError(f"prompt {index} is empty: give at least one character or token")
        if chat:
            ids = _chat_ids(tokenizer, [{"role": "user", "content": prompt}])
        else:
            ids = list(tokenizer.encode(prompt))
    elif _is_messages(prompt):
        check_messages(prompt, index)
        ids = _chat_ids(tokenizer, prompt)
    elif _is_token_list(prompt):
        ids = [int(t) for t in prompt]
        bad = [t for t in ids if not 0 <= t < vocab_size]
        if bad:
            raise ValueError(f"prompt {index} has token ids outside the vocabulary [0, {vocab_size}): {bad[:5]}")
    elif isinstance(prompt, Sequence) and not isinstance(prompt, bytes) and len(prompt) == 0:
        raise ValueError(f"prompt {index} is empty: give at least one token id or message")
    else:
        raise ValueError(f"prompt {index} must be a string, a list of token ids or a list of chat messages "
                         f"({{'role': ..., 'content': ...}}), got {prompt!r:.80}")
    ids = [int(t) for t in ids]
    if not ids:
        raise ValueError(f"prompt {index} is empty after tokenisation: give some text")
    return Prompt(original=prompt, token_ids=ids)


def _chat_ids(tokenizer: Any, messages: Sequence[Message]) -> list[int]:
    if not hasattr(tokenizer, "apply_chat_template"):
        raise ValueError("this model's tokenizer has no chat template: pass plain text (chat=False)")
    out = tokenizer.apply_chat_template([dict(m) for m in messages], add_generation_prompt=True)
    if isinstance(out, str):
        return list(tokenizer.encode(out))
    return [int(t) for t in out]
