"""Rendering chat messages into a prompt: the model's own Jinja template, or plain ChatML."""
from __future__ import annotations

import json
from typing import Any, Sequence


def render_chatml(messages: Sequence[dict[str, Any]], add_generation_prompt: bool = True) -> str:
    """ChatML: `<|im_start|>{role}\\n{content}<|im_end|>\\n` per message, then the assistant header."""
    out = []
    for m in messages:
        _check_message(m)
        out.append(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n")
    if add_generation_prompt:
        out.append("<|im_start|>assistant\n")
    return "".join(out)


def render_template(template: str, messages: Sequence[dict[str, Any]], *, add_generation_prompt: bool = True,
                    bos_token: str = "", eos_token: str = "", **extra: Any) -> str:
    """Render a Hugging Face style chat template (Jinja2, sandboxed, trim/lstrip blocks)."""
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise ValueError(f"chat template error: {message}")

    def tojson(value: Any, indent: int | None = None, ensure_ascii: bool = False, **_: Any) -> str:
        return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii)

    for m in messages:
        _check_message(m)
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(messages=list(messages), add_generation_prompt=add_generation_prompt,
                                            bos_token=bos_token, eos_token=eos_token, **extra)


def _check_message(m: Any) -> None:
    if not isinstance(m, dict) or "role" not in m or "content" not in m:
        raise ValueError(f"a chat message must be a dict with 'role' and 'content', got {m!r}")
