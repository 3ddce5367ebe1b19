"""The end-of-generation ids: a tokenizer's declared EOS first, then the added tokens that end a
generation wherever a vocabulary has them (END_OF_GENERATION_TEXTS, llama.cpp's set)."""
from __future__ import annotations

import json

from saguaro.models.tokenizer import END_OF_GENERATION_TEXTS, Tokenizer

_TOKENS = ["a", "b", "ab", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|file_sep|>", "<|fim_prefix|>"]
_CONTROL = 3


def _meta(eos: int) -> dict:
    return {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": _TOKENS, "tokenizer.ggml.merges": ["a b"],
            "tokenizer.ggml.token_type": [1, 1, 1] + [_CONTROL] * 5, "tokenizer.ggml.eos_token_id": eos,
            "tokenizer.ggml.pre": "qwen2"}


def test_a_gguf_declaring_the_chat_end_also_stops_at_the_documents_end():
    tok = Tokenizer.from_gguf_metadata(_meta(eos=5))
    # declared <|im_end|> first (chat templates render it as eos_token), then <|endoftext|> and <|file_sep|>;
    # <|im_start|> and the fill-in-the-middle prefix do not end a generation
    assert tok.eos_token_ids == [5, 3, 6]
    assert tok.apply_chat_template([{"role": "user", "content": "x"}]).count("<|im_end|>") == 1


def test_an_ordinary_token_with_no_such_text_is_left_alone():
    meta = _meta(eos=3)
    meta["tokenizer.ggml.tokens"] = ["a", "b", "ab", "<|endoftext|>", "<|im_start|>", "<|x|>", "<|y|>", "<|z|>"]
    assert Tokenizer.from_gguf_metadata(meta).eos_token_ids == [3]


def test_the_saved_directory_and_a_hugging_face_directory_give_the_same_ids(tmp_path):
    tok = Tokenizer.from_gguf_metadata(_meta(eos=5))
    (tmp_path / "saved").mkdir()
    tok.save(tmp_path / "saved")
    assert Tokenizer.from_directory(tmp_path / "saved").eos_token_ids == [5, 3, 6]
    # a Hugging Face directory: tokenizer.json and a config naming <|im_end|> as its eos_token
    hf = tmp_path / "hf"
    hf.mkdir()
    tok.backend.save(str(hf / "tokenizer.json"))
    (hf / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|im_end|>"}), encoding="utf-8")
    assert Tokenizer.from_directory(hf).eos_token_ids == [5, 3, 6]


def test_the_texts_are_llama_cpps_end_of_generation_set():
    # the chat-turn and document ends of the families saguaro loads, and the code models' file markers
    assert {"<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "<|file_sep|>"} <= END_OF_GENERATION_TEXTS
    assert "<|im_start|>" not in END_OF_GENERATION_TEXTS and "<|fim_prefix|>" not in END_OF_GENERATION_TEXTS
