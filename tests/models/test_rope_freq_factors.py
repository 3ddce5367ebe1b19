"""RoPE scaling given as per-frequency divisors (llama.cpp's rope_freqs): loading, applying, checking."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import saguaro.models as M
from conftest import make_hf
from gguf_writer import write_gguf
from saguaro.models.config import ModelConfig
from saguaro.models.decoder import DecoderModel
from saguaro.models.gguf_file import GGUFFile
from saguaro.models.rotary import RotaryTable, inverse_frequencies

# divisors no Llama 3 scaling produces (some below 1, not monotone); head_dim 16 of "llama-tied" -> 8
FACTORS = np.array([1.0, 0.5, 3.0, 1.7, 7.0, 2.5, 12.0, 40.0], dtype=np.float32)
TOKENS = list(range(3, 40))


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SAGUARO_CACHE", str(tmp_path / "cache"))


def _config(rope_scaling=None, head_dim: int = 16) -> ModelConfig:
    return ModelConfig(architecture="llama", vocab_size=97, hidden_size=64, intermediate_size=96, num_layers=2,
                       num_heads=4, num_kv_heads=2, head_dim=head_dim, rope_theta=10000.0,
                       rope_scaling=rope_scaling)


def _plain_inv_freq(theta: float, dim: int) -> np.ndarray:
    """inv_freq in float64, written out independently of saguaro's rotary module."""
    return np.array([theta ** (-(2 * i) / dim) for i in range(dim // 2)], dtype=np.float64)


def _reference_logits(hf, factors: np.ndarray | None) -> torch.Tensor:
    """transformers' logits at every position of TOKENS, with inv_freq divided by factors when given."""
    rotary = hf.model.rotary_emb
    saved = rotary.inv_freq.clone()
    try:
        if factors is not None:
            theta, dim = float(hf.config.rope_parameters["rope_theta"]), hf.config.head_dim
            rotary.inv_freq.copy_(torch.from_numpy(_plain_inv_freq(theta, dim) / factors.astype(np.float64)))
        with torch.no_grad():
            return hf(torch.tensor([TOKENS])).logits[0]
    finally:
        rotary.inv_freq.copy_(saved)


def _all_logits(adapter) -> torch.Tensor:
    """Native logits at every position of TOKENS (prefill one token, extend the rest)."""
    first = adapter.prefill([0], [TOKENS[:1]])
    return torch.cat([first, adapter.extend([0], [TOKENS[1:]])])


def test_rotary_table_divides_inverse_frequencies_by_the_factors():
    config = _config({"rope_type": "freq_factors", "factors": FACTORS.tolist()})
    inv = _plain_inv_freq(10000.0, 16) / FACTORS.astype(np.float64)
    assert np.allclose(inverse_frequencies(config).double().numpy(), inv, rtol=1e-6, atol=0)
    table = RotaryTable(config, 64, torch.float32, torch.device("cpu"))
    angles = np.outer(np.arange(64, dtype=np.float64), inv)
    angles = np.concatenate([angles, angles], axis=1)
    assert np.abs(table.cos.double().numpy() - np.cos(angles)).max() <= 1e-5
    assert np.abs(table.sin.double().numpy() - np.sin(angles)).max() <= 1e-5
    plain = RotaryTable(_config(), 64, torch.float32, torch.device("cpu"))
    assert (plain.cos - table.cos).abs().max().item() > 0.1  # the factors change the table


def test_gguf_with_other_rope_freqs_matches_transformers_with_divided_inv_freq(tmp_path):
    hf = make_hf("llama-tied")
    path = write_gguf(hf, tmp_path / "f.gguf", rope_freqs=FACTORS)
    assert GGUFFile(path).config().rope_scaling == {"rope_type": "freq_factors", "factors": FACTORS.tolist()}
    reference = _reference_logits(hf, FACTORS)
    lm = M.load(path, dtype=torch.float32)
    got = _all_logits(lm.adapter)
    assert (got - reference).abs().max().item() <= 1e-4
    # the conversion cache's config.json carries the factors, and the second load (from it) agrees exactly
    (converted,) = (tmp_path / "cache" / "converted").iterdir()
    stored = json.loads((converted / "config.json").read_text())["rope_scaling"]
    assert stored == {"rope_type": "freq_factors", "factors": FACTORS.tolist()}
    again = M.load(path, dtype=torch.float32)
    assert again.config.rope_scaling == lm.config.rope_scaling
    assert torch.equal(_all_logits(again.adapter), got)


def test_ignoring_the_factors_would_change_the_logits(tmp_path):
    """Planted: the same GGUF loaded without its factors misses the reference, so the check above can fail."""
    hf = make_hf("llama-tied")
    path = write_gguf(hf, tmp_path / "f.gguf", rope_freqs=FACTORS)
    g = GGUFFile(path)
    config = g.config()
    config.rope_scaling = None
    model = DecoderModel.from_state_dict(config, dict(g.tensors(config)), dtype=torch.float32)
    ignored = _all_logits(M.NativeModelAdapter(model))
    # a tiny random model's logits move little with RoPE, but 10x the 1e-4 the real check allows
    assert (ignored - _reference_logits(hf, FACTORS)).abs().max().item() > 1e-3
    # and the reference itself depends on the factors
    assert (_reference_logits(hf, None) - _reference_logits(hf, FACTORS)).abs().max().item() > 1e-3


def test_llama3_rope_freqs_still_give_the_llama3_parameters(tmp_path):
    path = write_gguf(make_hf("llama3.1"), tmp_path / "l.gguf")
    scaling = GGUFFile(path).config().rope_scaling
    assert scaling["rope_type"] == "llama3" and scaling["factor"] == 8.0
    assert (scaling["low_freq_factor"], scaling["high_freq_factor"]) == (1.0, 4.0)


def test_factors_round_trip_through_config_json():
    factors = (FACTORS / 3).tolist()  # values with long decimal expansions
    config = _config({"rope_type": "freq_factors", "factors": factors})
    back = ModelConfig.from_hf_dict(json.loads(json.dumps(config.to_hf_dict())))
    assert back == config and back.rope_scaling["factors"] == factors
    assert torch.equal(inverse_frequencies(back), inverse_frequencies(config))


@pytest.mark.parametrize("factors, what", [
    (FACTORS[:7].tolist(), "got 7 numbers"),
    (FACTORS.tolist() + [1.0], "got 9 numbers"),
    ([1.0] * 7 + [0.0], "got 0.0 at index 7"),
    ([1.0, -2.0] + [1.0] * 6, "got -2.0 at index 1"),
    ([1.0] * 3 + [math.nan] + [1.0] * 4, "got nan at index 3"),
    ([math.inf] + [1.0] * 7, "got inf at index 0"),
    (["2"] + [1.0] * 7, "got '2' at index 0"),
    (None, "got NoneType"),
    (4.0, "got float"),
])
def test_bad_factors_name_the_key_and_what_is_expected(factors, what):
    scaling = {"rope_type": "freq_factors", "factors": factors}
    expected = r"rope_scaling\['factors'\] must be a list of head_dim/2 = 8 positive finite numbers"
    with pytest.raises(ValueError, match=expected) as e:
        _config(scaling)
    assert what in str(e.value)
    config = _config()
    config.rope_scaling = scaling  # set after construction: the rotary table checks again
    with pytest.raises(ValueError, match=expected):
        inverse_frequencies(config)
    with pytest.raises(ValueError, match=expected):
        ModelConfig.from_hf_dict({**_config().to_hf_dict(), "rope_scaling": scaling})


@pytest.mark.parametrize("factors, what", [(FACTORS[:6], "got 6 numbers"), (np.where(FACTORS == 3.0, 0.0, FACTORS),
                                                                          "got 0.0 at index 2")])
def test_bad_rope_freqs_tensor_names_the_file(tmp_path, factors, what):
    path = write_gguf(make_hf("llama-tied"), tmp_path / "bad.gguf", rope_freqs=factors)
    with pytest.raises(ValueError, match=r"bad\.gguf: bad rope_freqs\.weight tensor: rope_scaling\['factors'\]") as e:
        M.load(path, dtype=torch.float32)
    assert what in str(e.value)


@pytest.mark.parametrize("scaling", [{"rope_type": "yarn", "factor": 4.0}, {"type": "linear", "factor": 2.0},
                                     {"rope_type": "dynamic", "factor": 2.0}])
def test_unknown_rope_type_is_not_implemented(scaling):
    supported = r"applies 'llama3', 'freq_factors' or none \('default'\)"
    with pytest.raises(NotImplementedError, match=supported):
        _config(scaling)
    with pytest.raises(NotImplementedError, match=supported):
        ModelConfig.from_hf_dict({**_config().to_hf_dict(), "rope_scaling": scaling})
    config = _config()
    config.rope_scaling = scaling  # never silently Llama 3 math
    with pytest.raises(NotImplementedError, match=supported):
        inverse_frequencies(config)


@pytest.mark.parametrize("scaling", [None, {}, {"rope_type": "default"}, {"type": "default"}, {"factor": 8.0}])
def test_default_or_missing_rope_type_means_plain_rope(scaling):
    plain = torch.from_numpy(_plain_inv_freq(10000.0, 16)).float()
    assert torch.allclose(inverse_frequencies(_config(scaling)), plain, rtol=1e-6, atol=0)
    assert ModelConfig.from_hf_dict({**_config().to_hf_dict(), "rope_scaling": scaling}).rope_scaling is None
