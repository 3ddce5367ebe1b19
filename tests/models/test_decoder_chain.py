"""The C++ decoder chain (saguaro.models.decoder_chain): a quantized bf16 model's decodes, verifications
and tree steps, of one sequence or a batch, through all layers in one call give the bits of the Python
layer loop, logits and KV slots alike; prefills of more than 32 rows (masked) keep the Python path; bad
arguments raise ValueError."""
from __future__ import annotations

import pytest
import torch

from conftest import make_hf
from gguf_writer import write_gguf

import saguaro.models as M
from saguaro.kernels import attention as attention_kernel
from saguaro.kernels import quant
from saguaro.models.decoder_chain import DecoderChain

pytestmark = pytest.mark.skipif(not (quant.available() and attention_kernel.available()),
                                reason="the chain runs the quantized and attention kernels (AVX2+FMA CPUs)")


@pytest.fixture(scope="module", params=["qwen2-untied", "qwen2-tied", "llama3-scaled"])
def gguf(request, tmp_path_factory):
    d = tmp_path_factory.mktemp("chain")
    quant_types = {"attn_v": "Q8_0", "*": "Q5_0"} if request.param == "qwen2-untied" else "Q8_0"
    return write_gguf(make_hf(request.param), d / f"{request.param}.gguf", quant=quant_types)


def _steps(adapter) -> list[torch.Tensor]:
    adapter.prefill([0, 1], [[3, 17, 42, 5, 88, 60, 21], [9, 1, 4]])
    outs = [adapter.extend([0], [[11]]), adapter.extend([0], [[12, 13, 14, 15]]),  # decode, verification
            adapter.extend([0, 1], [[16], [17, 18]])]  # a batch of two sequences
    for depth in range(3):  # a tree of two branches on each sequence
        outs.append(adapter.tree_step([0, 0, 1, 1], [9, 9, 4, 4], [19 + depth, 22, 25, 28 - depth], depth))
    outs.append(adapter.extend([0], [[21]]))  # after the tree: a decode over its slots
    outs.append(adapter.prefill([2], [list(range(40, 80))]))  # a prefill of 40 rows (unmasked: the kernel)
    return outs


def test_the_chain_gives_the_bits_of_the_python_layers(gguf, monkeypatch):
    chained = M.load(gguf, quantized=True, dtype=torch.bfloat16).adapter
    plain = M.load(gguf, quantized=True, dtype=torch.bfloat16).adapter
    assert chained.model.chain is not None
    plain.model.chain = None
    runs = []
    run = DecoderChain.run
    monkeypatch.setattr(DecoderChain, "run", lambda self, x, *a: runs.append(x.shape[0]) or run(self, x, *a))
    a, b = _steps(chained), _steps(plain)
    assert runs == [10, 1, 4, 3, 4, 4, 4, 1, 40]  # every step, the prefill of 40 rows too
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    ka, kb = chained._cache.get(0).buffer, plain._cache.get(0).buffer
    n = chained.length(0)
    assert torch.equal(ka[..., :n, :], kb[..., :n, :])


def test_the_chain_is_built_only_where_it_applies(gguf):
    assert M.load(gguf, quantized=True, dtype=torch.float32).adapter.model.chain is None  # fp32: Python
    assert M.load(gguf, dtype=torch.bfloat16).adapter.model.chain is None  # dequantized bf16: no QuantLinear


def test_the_attention_switch_turns_the_chain_off(gguf, monkeypatch):
    adapter = M.load(gguf, quantized=True, dtype=torch.bfloat16).adapter
    runs = []
    run = DecoderChain.run
    monkeypatch.setattr(DecoderChain, "run", lambda self, *a: runs.append(1) or run(self, *a))
    monkeypatch.setenv("SAGUARO_CPU_ATTENTION", "torch")
    adapter.prefill([0], [[3, 4, 5]])
    adapter.extend([0], [[6]])
    assert runs == []


def test_bad_arguments_raise_value_error(gguf):
    model = M.load(gguf, quantized=True, dtype=torch.bfloat16).adapter.model
    native = model.chain._native
    c = model.config
    d = c.head_dim
    x = torch.zeros(2, c.hidden_size, dtype=torch.bfloat16)
    cs = torch.zeros(2, d, dtype=torch.bfloat16)
    kv = torch.zeros(c.num_layers, 2, c.num_kv_heads, 8, d, dtype=torch.bfloat16)
    whole = [(0, 2, kv, 0, None)]
    with pytest.raises(ValueError, match="start"):
        native.forward(x, cs, cs, [(0, 2, kv, 7, None)], None, None, 1)
    with pytest.raises(ValueError, match="kv: expected shape"):
        native.forward(x, cs, cs, [(0, 2, kv[:1], 0, None)], None, None, 1)
    with pytest.raises(ValueError, match="cover"):
        native.forward(x, cs, cs, [(0, 1, kv, 0, None)], None, None, 1)
    with pytest.raises(ValueError, match="prefix: expected shape"):
        native.forward(x, cs, cs, [(0, 2, kv, 0, (torch.zeros(3, dtype=torch.int64), torch.zeros(2, dtype=torch.int64),
                                                  1, 1))], None, None, 1)
    with pytest.raises(ValueError, match="cos: expected shape"):
        native.forward(x, cs[:1], cs, whole, None, None, 1)
    with pytest.raises(ValueError, match="x: expected"):
        native.forward(x.float(), cs, cs, whole, None, None, 1)
    with pytest.raises(ValueError, match="normed"):
        native.forward(x, cs, cs, whole, model.final_norm.weight, x[:1], 1)
