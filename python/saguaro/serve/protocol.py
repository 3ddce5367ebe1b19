"""The OpenAI request bodies this server takes (completions and chat), validated into saguaro terms.

Fields the server does not implement (logprobs, echo, penalties, logit_bias, n > 1, best_of, suffix,
tools) are refused with a 400 that names them rather than silently ignored; unknown extra fields are
ignored, as OpenAI-compatible servers do. ``top_k`` and ``ignore_eos`` are the vLLM extensions.
"""
from __future__ import annotations

import json
from typing import Any, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from saguaro.sampling_params import SamplingParams
from saguaro.serve.errors import APIError, bad_request

#: OpenAI's default max_tokens for /v1/completions (chat defaults to the room left in the context)
COMPLETIONS_DEFAULT_MAX_TOKENS = 16


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class _SamplingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    max_tokens: Optional[int] = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=0, ge=-1)
    stop: Union[str, list[str], None] = None
    seed: Optional[int] = Field(default=None, ge=0, lt=2**64)
    n: int = 1
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    ignore_eos: bool = False
    #: extension (as in vLLM): put the generated token ids in each choice / stream chunk
    return_token_ids: bool = False
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logprobs: Any = None
    logit_bias: Optional[dict[str, float]] = None
    user: Optional[str] = None

    def check_supported(self) -> None:
        """400 for a parameter this server does not implement."""
        if self.n != 1:
            raise bad_request(f"n must be 1 (one completion per request), got {self.n}", "n")
        if self.presence_penalty != 0 or self.frequency_penalty != 0:
            name = "presence_penalty" if self.presence_penalty != 0 else "frequency_penalty"
            raise bad_request(f"{name} is not supported (penalties change the output distribution that "
                              f"speculation keeps exact): leave it at 0", name)
        if self.logprobs not in (None, False, 0):
            raise bad_request("logprobs are not supported by this server", "logprobs")
        if self.logit_bias:
            raise bad_request("logit_bias is not supported by this server", "logit_bias")
        if isinstance(self.stop, list):
            if any(s == "" for s in self.stop):
                raise bad_request("stop strings must not be empty", "stop")

    def sampling(self, max_tokens: int) -> SamplingParams:
        """The request's SamplingParams with ``max_tokens`` new tokens at most."""
        try:
            return SamplingParams(temperature=self.temperature, top_k=max(0, self.top_k), top_p=self.top_p,
                                  max_new_tokens=max_tokens, stop=self.stop, ignore_eos=self.ignore_eos,
                                  seed=self.seed)
        except ValueError as e:
            raise bad_request(str(e)) from None

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class CompletionRequest(_SamplingRequest):
    """POST /v1/completions: one prompt (a string or token ids)."""

    prompt: Union[str, list[int], list[str], list[list[int]]]
    echo: bool = False
    best_of: Optional[int] = None
    suffix: Optional[str] = None

    def check_supported(self) -> None:
        super().check_supported()
        if self.echo:
            raise bad_request("echo is not supported by this server", "echo")
        if self.best_of not in (None, 1):
            raise bad_request("best_of must be 1", "best_of")
        if self.suffix:
            raise bad_request("suffix is not supported by this server", "suffix")

    def single_prompt(self) -> Union[str, list[int]]:
        """The one prompt (a list of one string or one token list is unwrapped)."""
        p = self.prompt
        if isinstance(p, list) and p and isinstance(p[0], (str, list)):
            if len(p) != 1:
                raise bad_request(f"this server takes one prompt per request, got {len(p)}", "prompt")
            p = p[0]
        if isinstance(p, str) and p == "" or isinstance(p, list) and not p:
            raise bad_request("prompt is empty: give some text or token ids", "prompt")
        return p


class _TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str
    text: Optional[str] = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: str
    content: Union[str, list[_TextPart], None] = None

    def text(self, index: int) -> str:
        """The message's text (text parts joined); 400 for images and other parts."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        out = []
        for part in self.content:
            if part.type != "text" or part.text is None:
                raise bad_request(f"messages[{index}]: only text content parts are supported, got {part.type!r}",
                                  f"messages.{index}.content")
            out.append(part.text)
        return "".join(out)


class ChatCompletionRequest(_SamplingRequest):
    """POST /v1/chat/completions: messages through the model's chat template."""

    messages: list[ChatMessage]
    max_completion_tokens: Optional[int] = Field(default=None, ge=1)
    tools: Optional[list[Any]] = None

    def check_supported(self) -> None:
        super().check_supported()
        if not self.messages:
            raise bad_request("messages is empty: give at least one message", "messages")
        if self.tools:
            raise bad_request("tools are not supported by this server", "tools")

    def chat_messages(self) -> list[dict[str, str]]:
        """Plain {"role", "content"} dicts for the chat template."""
        return [{"role": m.role, "content": m.text(i)} for i, m in enumerate(self.messages)]

    @property
    def requested_max_tokens(self) -> Optional[int]:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}


def _is_type_tag(loc: Any) -> bool:
    return isinstance(loc, str) and (loc in _TYPE_TAGS or "[" in loc or "-" in loc)


def parse_body(raw: bytes, model: type[BaseModel]) -> Any:
    """The validated request, or a 400 APIError naming the first bad field."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise bad_request(f"the request body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise bad_request(f"the request body must be a JSON object, got {type(data).__name__}")
    try:
        req = model.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        # the location without the union branches pydantic names ("prompt.str", "stop.list[str]")
        param = ".".join(str(x) for x in err.get("loc", ()) if not _is_type_tag(x))
        raise bad_request(f"invalid value for {param or 'the body'}: {err.get('msg')}"
                          f" (got {json.dumps(err.get('input'), default=str)[:80]})", param or None) from None
    req.check_supported()
    return req


__all__ = ["APIError", "CompletionRequest", "ChatCompletionRequest", "ChatMessage", "parse_body",
           "COMPLETIONS_DEFAULT_MAX_TOKENS"]
