"""saguaro.models.Tokenizer: a `tokenizers` tokenizer plus EOS/BOS ids and the chat template.

Built from a Hugging Face directory (tokenizer.json + tokenizer_config.json) or from the BPE
vocabulary and merges stored in a GGUF file's metadata.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import tokenizers
from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers

from saguaro.models.chat_template import render_chatml, render_template

META_FILE = "saguaro_tokenizer.json"

# Pre-tokenizer split patterns by the GGUF `tokenizer.ggml.pre` name (how each vocabulary's merges were learned).
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_SPLITS = {"qwen2": _QWEN2_SPLIT, "deepseek-r1-qwen": _QWEN2_SPLIT, "llama3": _LLAMA3_SPLIT,
           "llama-bpe": _LLAMA3_SPLIT, "llama-v3": _LLAMA3_SPLIT, "smaug-bpe": _LLAMA3_SPLIT}
# llama.cpp splits digits one by one before the GPT-2 pattern for these vocabularies.
_DIGIT_SPLIT = {"smollm", "starcoder", "refact", "codeshell"}
_CONTROL, _USER_DEFINED = 3, 4
#: Added tokens that end a generation wherever a vocabulary has them, besides its declared EOS: the end
#: of a chat turn, of a document, and code models' fill-in-the-middle pad, repository and file markers.
#: llama.cpp counts the same texts as end-of-generation tokens. Without them a GGUF whose declared EOS
#: is the chat turn's end (Qwen2.5's Instruct files: <|im_end|>) writes past its own <|endoftext|>.
END_OF_GENERATION_TEXTS = frozenset({
    "<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
    "<EOT>", "_<EOT>", "<\uff5cend\u2581of\u2581sentence\uff5c>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"})


class Tokenizer:
    """Text <-> token ids for one model, with its EOS ids and chat template."""

    def __init__(self, backend: tokenizers.Tokenizer, *, eos_token_ids: Sequence[int], bos_token_id: int | None = None,
                 add_bos: bool = False, chat_template: str | None = None) -> None:
        self.backend = backend
        self.eos_token_ids = [int(e) for e in eos_token_ids]
        self.bos_token_id = bos_token_id
        self.add_bos = bool(add_bos)
        self.chat_template = chat_template

    @property
    def vocab_size(self) -> int:
        """Number of token ids the tokenizer knows (added tokens included)."""
        return self.backend.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str, *, add_bos: bool | None = None) -> list[int]:
        """Token ids of text; special tokens written in the text (e.g. `<|im_start|>`) stay whole."""
        ids = self.backend.encode(text, add_special_tokens=False).ids
        if (self.add_bos if add_bos is None else add_bos) and self.bos_token_id is not None:
            ids = [self.bos_token_id] + ids
        return ids

    def special_token_ids(self) -> list[int]:
        """Ids of the added / special tokens (chat markers, EOS, ...)."""
        return sorted({int(i) for i in self.backend.get_added_tokens_decoder()} | set(self.eos_token_ids))

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = False) -> str:
        """Text of token ids."""
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def id_to_token(self, token_id: int) -> str | None:
        return self.backend.id_to_token(token_id)

    def apply_chat_template(self, messages: Sequence[dict[str, Any]], *, add_generation_prompt: bool = True,
                            **extra: Any) -> str:
        """The prompt text for chat messages: the model's template if it has one, else ChatML."""
        if not self.chat_template:
            return render_chatml(messages, add_generation_prompt)
        bos = self.id_to_token(self.bos_token_id) if self.bos_token_id is not None else ""
        eos = self.id_to_token(self.eos_token_ids[0]) if self.eos_token_ids else ""
        return render_template(self.chat_template, messages, add_generation_prompt=add_generation_prompt,
                               bos_token=bos or "", eos_token=eos or "", **extra)

    def encode_chat(self, messages: Sequence[dict[str, Any]], *, add_generation_prompt: bool = True) -> list[int]:
        """Token ids of the chat prompt."""
        return self.encode(self.apply_chat_template(messages, add_generation_prompt=add_generation_prompt))

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> None:
        """Write tokenizer.json and saguaro_tokenizer.json (EOS/BOS ids, add_bos, chat template)."""
        d = Path(directory)
        self.backend.save(str(d / "tokenizer.json"))
        meta = {"eos_token_ids": self.eos_token_ids, "bos_token_id": self.bos_token_id, "add_bos": self.add_bos,
                "chat_template": self.chat_template}
        (d / META_FILE).write_text(json.dumps(meta), encoding="utf-8")

    @classmethod
    def from_directory(cls, directory: str | Path, eos_token_ids: Sequence[int] = ()) -> "Tokenizer | None":
        """Read a saguaro cache directory or a Hugging Face model directory; None without tokenizer.json."""
        d = Path(directory)
        if not (d / "tokenizer.json").is_file():
            return None
        backend = tokenizers.Tokenizer.from_file(str(d / "tokenizer.json"))
        if (d / META_FILE).is_file():
            meta = json.loads((d / META_FILE).read_text(encoding="utf-8"))
            return cls(backend, eos_token_ids=_end_of_generation(backend, meta["eos_token_ids"]),
                       bos_token_id=meta["bos_token_id"],
                       add_bos=meta["add_bos"], chat_template=meta["chat_template"])
        cfg: dict[str, Any] = {}
        if (d / "tokenizer_config.json").is_file():
            cfg = json.loads((d / "tokenizer_config.json").read_text(encoding="utf-8"))
        template = cfg.get("chat_template")
        if isinstance(template, list):  # named templates: use the default one
            template = next((t["template"] for t in template if t.get("name") == "default"), None)
        if template is None and (d / "chat_template.jinja").is_file():
            template = (d / "chat_template.jinja").read_text(encoding="utf-8")
        eos = list(eos_token_ids)
        eos_tok = _token_text(cfg.get("eos_token"))
        if eos_tok is not None and backend.token_to_id(eos_tok) is not None:
            eos.append(backend.token_to_id(eos_tok))
        bos_tok = _token_text(cfg.get("bos_token"))
        bos = backend.token_to_id(bos_tok) if bos_tok is not None else None
        return cls(backend, eos_token_ids=_end_of_generation(backend, sorted(set(eos))), bos_token_id=bos,
                   add_bos=bool(cfg.get("add_bos_token", False)), chat_template=template)

    @classmethod
    def from_gguf_metadata(cls, meta: dict[str, Any]) -> "Tokenizer":
        """Build a byte-level BPE tokenizer from GGUF `tokenizer.ggml.*` metadata."""
        kind = meta.get("tokenizer.ggml.model")
        if kind != "gpt2":
            raise NotImplementedError(f"GGUF tokenizer model {kind!r} is not supported: only byte-level BPE ('gpt2'), "
                                      "which Qwen, Llama 3 and SmolLM2 files use")
        tokens: list[str] = list(meta["tokenizer.ggml.tokens"])
        merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges", [])]
        vocab = {t: i for i, t in enumerate(tokens)}
        backend = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
        pre = meta.get("tokenizer.ggml.pre", "default")
        if pre in _SPLITS:
            backend.pre_tokenizer = pre_tokenizers.Sequence([
                pre_tokenizers.Split(Regex(_SPLITS[pre]), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        elif pre in _DIGIT_SPLIT:
            backend.pre_tokenizer = pre_tokenizers.Sequence([
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
        else:
            backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        backend.decoder = decoders.ByteLevel()
        types = list(meta.get("tokenizer.ggml.token_type") or [])
        special = [AddedToken(tokens[i], special=True, normalized=False)
                   for i, t in enumerate(types) if t == _CONTROL]
        user = [AddedToken(tokens[i], special=False, normalized=False)
                for i, t in enumerate(types) if t == _USER_DEFINED]
        if special:
            backend.add_special_tokens(special)
        if user:
            backend.add_tokens(user)
        eos = [int(meta[k]) for k in ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id") if k in meta]
        bos = meta.get("tokenizer.ggml.bos_token_id")
        return cls(backend, eos_token_ids=_end_of_generation(backend, sorted(set(eos))), bos_token_id=None if bos is None else int(bos),
                   add_bos=bool(meta.get("tokenizer.ggml.add_bos_token", False)),
                   chat_template=meta.get("tokenizer.chat_template"))


def _end_of_generation(backend: tokenizers.Tokenizer, eos: Sequence[int]) -> list[int]:
    """The declared EOS ids in their order, then every other added token named in
    END_OF_GENERATION_TEXTS (sorted): the first id stays the declared EOS, which chat templates render
    as ``eos_token``."""
    declared = list(dict.fromkeys(int(e) for e in eos))
    named = {int(i) for i, t in backend.get_added_tokens_decoder().items() if t.content in END_OF_GENERATION_TEXTS}
    return declared + sorted(named - set(declared))


def _token_text(tok: Any) -> str | None:
    if isinstance(tok, dict):
        return tok.get("content")
    return tok if isinstance(tok, str) else None
