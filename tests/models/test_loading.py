"""Loading from GGUF files, Hugging Face directories and objects; the conversion cache; presets."""
from __future__ import annotations

import hashlib
import os

import pytest
import torch

import saguaro.models as M
from conftest import make_hf, native_from_hf
from gguf_writer import write_gguf
from saguaro.models import presets


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SAGUARO_CACHE", str(tmp_path / "cache"))


def _hf_logits(model, tokens):
    with torch.no_grad():
        return model(torch.tensor([tokens])).logits[0]


@pytest.mark.parametrize("family", ["llama-tied", "llama3.1", "qwen2-untied", "qwen2-tied", "qwen3"])
def test_gguf_file_loads_to_the_same_logits(tmp_path, family):
    hf = make_hf(family)
    path = write_gguf(hf, tmp_path / f"{family}.gguf")
    lm = M.load(str(path), dtype=torch.float32)
    tokens = list(range(3, 40))
    got = lm.adapter.prefill([0], [tokens])
    assert (got[0] - _hf_logits(hf, tokens)[-1]).abs().max().item() <= 1e-4
    assert lm.adapter.eos_token_ids == [96]
    # converted once: the second load reads the cache directory
    converted = list((tmp_path / "cache" / "converted").iterdir())
    assert len(converted) == 1 and (converted[0] / "model.safetensors").is_file()
    again = M.load(path, dtype=torch.float32)
    assert (again.adapter.prefill([0], [tokens]) - got).abs().max().item() <= 1e-6


def test_llama_gguf_without_unpermute_would_differ(tmp_path):
    """The q/k un-permutation matters: loading the permuted weights as they are changes the logits."""
    hf = make_hf("llama-tied")
    path = write_gguf(hf, tmp_path / "l.gguf")
    from saguaro.models.decoder import DecoderModel
    from saguaro.models.gguf_file import GGUFFile
    g = GGUFFile(path)
    config = g.config()
    g.architecture = "qwen2"  # skips the llama-only un-permutation
    model = DecoderModel.from_state_dict(config, dict(g.tensors(config)), dtype=torch.float32)
    bad = M.NativeModelAdapter(model).prefill([0], [list(range(3, 30))])
    assert (bad[0] - _hf_logits(hf, list(range(3, 30)))[-1]).abs().max().item() > 1e-3


def test_gguf_tokenizer_and_chat_template(tmp_path):
    path = write_gguf(make_hf("qwen2-untied"), tmp_path / "q.gguf")
    tok = M.load(path, dtype=torch.float32).tokenizer
    assert tok.vocab_size == 97 and tok.eos_token_ids == [96]
    text = tok.apply_chat_template([{"role": "user", "content": "abc"}])
    assert text == "<|im_start|>user\nabc<|im_end|>\n<|im_start|>assistant\n"
    ids = tok.encode(text)
    assert ids[0] == 95 and 96 in ids            # the control tokens stay whole
    assert tok.decode(ids) == text


def test_hf_directory_sharded_and_tied(tmp_path):
    for family in ("qwen2-tied", "llama3-scaled"):
        hf = make_hf(family)
        d = tmp_path / family
        hf.save_pretrained(d, max_shard_size="20KB")
        assert (d / "model.safetensors.index.json").is_file()
        lm = M.load(d, dtype=torch.float32)
        assert lm.tokenizer is None and lm.name == family
        tokens = list(range(5, 33))
        got = lm.adapter.prefill([1], [tokens])
        assert (got[0] - _hf_logits(hf, tokens)[-1]).abs().max().item() <= 1e-4


def test_load_objects(tmp_path):
    hf = make_hf("qwen3")
    tokens = list(range(2, 20))
    ref = _hf_logits(hf, tokens)[-1]
    native = native_from_hf(hf).model
    for spec, kind in ((native, M.NativeModelAdapter), (hf, M.HFModelAdapter),
                       (lambda ids: hf(ids).logits, M.CallableAdapter)):
        lm = M.load(spec)
        assert isinstance(lm.adapter, kind)
        assert isinstance(lm.adapter, M.ModelAdapter)
        assert (lm.adapter.prefill([0], [tokens])[0] - ref).abs().max().item() <= 1e-4


def test_default_pair_and_presets():
    target, draft = M.default_pair()
    assert (target, draft) == ("qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b")
    assert {target, draft, "smollm2-135m"} <= set(M.PRESETS)


def test_assemble_checks_size_and_sha256(tmp_path):
    parts = []
    for i, chunk in enumerate([b"abc" * 1000, b"defg" * 777, b"z"]):
        p = tmp_path / f"part{i:02d}.bin"
        p.write_bytes(chunk)
        parts.append(p)
    whole = b"".join(p.read_bytes() for p in parts)
    good = hashlib.sha256(whole).hexdigest()
    out = tmp_path / "files" / "m.gguf"
    presets.assemble(parts, out, good, len(whole))
    assert out.read_bytes() == whole and (tmp_path / "files" / "m.gguf.sha256-ok").is_file()
    with pytest.raises(ValueError, match="checksum mismatch"):
        presets.assemble(parts, tmp_path / "files" / "bad.gguf", "0" * 64, len(whole))
    assert not (tmp_path / "files" / "bad.gguf").exists()
    assert not [p for p in os.listdir(tmp_path / "files") if p.endswith(".partial")]
    with pytest.raises(ValueError, match="expected 5"):
        presets.assemble(parts, tmp_path / "files" / "short.gguf", good, 5)


def test_preset_assembly_from_part_packages(tmp_path, monkeypatch):
    """A preset built from fake part packages on sys.path: assembled in order, checked, converted, loaded."""
    hf = make_hf("qwen2-untied")
    gguf_bytes = write_gguf(hf, tmp_path / "src.gguf").read_bytes()
    site = tmp_path / "site"
    n = 3
    step = len(gguf_bytes) // n + 1
    for i in range(n):
        pkg = site / f"fake_model_part{i + 1}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"part{i + 1:02d}.bin").write_bytes(gguf_bytes[i * step:(i + 1) * step])
    monkeypatch.syspath_prepend(str(site))
    preset = presets.Preset(name="fake", file_name="fake.gguf",
                            packages=tuple(f"fake-model-part{i + 1}" for i in range(n)), version="1.0",
                            sha256=hashlib.sha256(gguf_bytes).hexdigest(), size=len(gguf_bytes),
                            install_hint="pip install fake")
    monkeypatch.setitem(presets.PRESETS, "fake", preset)
    lm = M.load("fake", dtype=torch.float32)
    tokens = list(range(4, 25))
    assert (lm.adapter.prefill([0], [tokens])[0] - _hf_logits(hf, tokens)[-1]).abs().max().item() <= 1e-4
    assert (tmp_path / "cache" / "files" / "fake.gguf").read_bytes() == gguf_bytes


def test_hf_directory_with_tokenizer_files(tmp_path):
    import json

    hf = make_hf("qwen2-untied")
    src = M.load(write_gguf(hf, tmp_path / "t.gguf"), dtype=torch.float32).tokenizer
    d = tmp_path / "hfdir"
    hf.save_pretrained(d)
    src.backend.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps({
        "eos_token": "<|im_end|>", "add_bos_token": False,
        "chat_template": "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}"}))
    lm = M.load(d, dtype=torch.float32)
    assert lm.tokenizer is not None and 96 in lm.tokenizer.eos_token_ids and 96 in lm.adapter.eos_token_ids
    assert lm.tokenizer.apply_chat_template([{"role": "user", "content": "x"}]) == "[user]x"
    assert lm.tokenizer.encode("<|im_end|>ab") == [96] + src.encode("ab")


def test_a_bf16_model_keeps_no_view_of_its_safetensors_file(tmp_path):
    """Norms, biases and an untied embedding are the model's own copies: a view of the memory-mapped
    file would keep the whole mapping, with every page the load read, resident beside the packed
    projections (the 1.5B in bf16: 3.0 GB of file pages beside 3.2 GB of model)."""
    import gc

    hf = make_hf("qwen2-untied")
    d = tmp_path / "untied"
    hf.to(torch.bfloat16).save_pretrained(d)  # bf16 in the file: the load converts nothing
    hf.float()
    files = [str(p) for p in d.glob("*.safetensors")]
    lm = M.load(d, dtype=torch.bfloat16)
    if lm.adapter.model.head.packed is None:
        pytest.skip("the bf16 projections are not packed on this CPU: they are views of the file by design")
    gc.collect()
    with open("/proc/self/maps") as fh:
        mapped = [line for line in fh if any(f in line for f in files)]
    assert not mapped, mapped
    tokens = list(range(5, 21))  # and the copies are the weights: logits as the reference computes them
    got = lm.adapter.prefill([1], [tokens])
    assert (got[0].float() - _hf_logits(hf, tokens)[-1]).abs().max().item() <= 0.1
