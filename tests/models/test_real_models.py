"""Real weights: SmolLM2-135M (GGUF) against transformers, and the Qwen2.5-Coder 1.5B/0.5B pair."""
from __future__ import annotations

import pytest
import torch

import saguaro.models as M
from saguaro.models import presets
from saguaro.models.model_store import cache_root

pytestmark = pytest.mark.slow

TEXTS = ["Hello world", "def fibonacci(n):\n    return 12345 + n", "  spaces\t\ttabs\n\nnewlines",
         "Ünïcödé 日本語 🙂", "<|im_start|>user\nhi<|im_end|>", "It's 3.14159, isn't it? I'll go.",
         "    for i in range(10):\n        print(i**2)  # squares"]

FIB_PROMPT = 'def fibonacci(n):\n    """Return the n-th Fibonacci number (fibonacci(0) == 0)."""\n'


def _smollm2_gguf():
    return presets.preset_gguf(presets.PRESETS["smollm2-135m"])


def test_smollm2_gguf_matches_transformers_gguf_loading():
    transformers = pytest.importorskip("transformers")
    path = _smollm2_gguf()
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                           dtype=torch.float32).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    lm = M.load("smollm2-135m", dtype=torch.float32)
    # the declared <|im_end|>, then <|endoftext|> (llama.cpp's end-of-generation set)
    assert lm.config.architecture == "llama" and lm.adapter.eos_token_ids == [2, 0]
    for text in TEXTS:
        ids = lm.tokenizer.encode(text)
        assert ids == hf_tok.encode(text, add_special_tokens=False), text
        assert lm.tokenizer.decode(ids) == text
    chat = lm.tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}])
    assert chat == hf_tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                              add_generation_prompt=True)
    ids = lm.tokenizer.encode("The quick brown fox jumps over the lazy dog. " + FIB_PROMPT)
    with torch.no_grad():
        ref = hf(torch.tensor([ids])).logits[0]
    got = lm.adapter.prefill([0], [ids[:12]])
    ext = lm.adapter.extend([0], [ids[12:]])
    diff = max((got[0] - ref[11]).abs().max().item(), (ext - ref[12:]).abs().max().item())
    print(f"SmolLM2 native vs transformers GGUF fp32 max abs diff {diff:.3g}")
    assert diff <= 1e-4


def test_smollm2_answers_a_chat_question():
    lm = M.load("smollm2-135m", dtype=torch.float32)
    ids = lm.tokenizer.encode_chat([{"role": "user", "content": "What is the capital of France?"}])
    text = _greedy(lm.adapter, lm.tokenizer, ids, 20)
    assert "Paris" in text


def _greedy(adapter, tokenizer, ids: list[int], n: int, seq: int = 0) -> str:
    logits = adapter.prefill([seq], [ids])
    out = []
    for _ in range(n):
        t = int(logits[-1].argmax())
        if t in adapter.eos_token_ids:
            break
        out.append(t)
        logits = adapter.extend([seq], [[t]])
    adapter.release(seq)
    return tokenizer.decode(out)


def test_qwen_pair_loads_from_packages_and_writes_code():
    target_name, draft_name = M.default_pair()
    target = M.load(target_name)
    draft = M.load(draft_name)
    for name in (target_name, draft_name):
        p = presets.PRESETS[name]
        assembled = cache_root() / "files" / p.file_name
        assert (assembled.with_name(assembled.name + ".sha256-ok")).read_text() == p.sha256
    M.check_vocab_compatible(target, draft)
    assert target.adapter.vocab_size == draft.adapter.vocab_size == 151936
    # the Instruct files declare <|im_end|>; a plain-text completion ends with <|endoftext|> (or a code
    # model's <|file_sep|>), which must stop it too
    assert target.adapter.eos_token_ids[:2] == [151645, 151643] and 151664 in target.adapter.eos_token_ids
    assert target.config.architecture == "qwen2" and not target.config.tie_word_embeddings
    for lm in (target, draft):
        ids = lm.tokenizer.encode(FIB_PROMPT)
        text = _greedy(lm.adapter, lm.tokenizer, ids, 40)
        print(lm.name, repr(text))
        assert "return" in text and "fibonacci" in (FIB_PROMPT + text)
    chat = target.tokenizer.apply_chat_template([{"role": "user", "content": "hi"}])
    assert chat.startswith("<|im_start|>system\n") and chat.endswith("<|im_start|>assistant\n")
    enc = target.tokenizer.encode(chat)
    assert enc.count(151644) == 3 and enc.count(151645) == 2   # <|im_start|> / <|im_end|> stay whole


def test_qwen_gguf_tokenizer_matches_transformers():
    transformers = pytest.importorskip("transformers")
    path = presets.preset_gguf(presets.PRESETS["qwen2.5-coder-0.5b"])
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    tok = M.load("qwen2.5-coder-0.5b").tokenizer
    for text in TEXTS + ["x = [1, 22, 333, 4444]\n\n\n\tdef   f():  pass", "你好，世界！ Привет мир"]:
        ids = tok.encode(text)
        assert ids == hf_tok.encode(text, add_special_tokens=False), text
        assert tok.decode(ids) == text
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Write hello world."}]
    assert tok.apply_chat_template(msgs) == hf_tok.apply_chat_template(msgs, tokenize=False,
                                                                        add_generation_prompt=True)
