import pytest

from saguaro import SamplingParams
from saguaro.sampling_params import derive_seed


@pytest.mark.parametrize("kw, msg", [
    (dict(temperature=-0.1), "temperature must be >= 0"),
    (dict(temperature=float("nan")), "temperature must be a finite number"),
    (dict(top_k=-1), "top_k must be an integer >= 0"),
    (dict(top_k=1.5), "top_k must be an integer >= 0"),
    (dict(top_p=0.0), r"top_p must be in \(0, 1\]"),
    (dict(top_p=1.01), r"top_p must be in \(0, 1\]"),
    (dict(top_p=-0.5), r"top_p must be in \(0, 1\]"),
    (dict(max_new_tokens=0), "max_new_tokens must be an integer >= 1"),
    (dict(max_new_tokens=-3), "max_new_tokens must be an integer >= 1"),
    (dict(stop_token_ids=[-1]), "stop_token_ids must hold token ids >= 0"),
    (dict(stop_token_ids="ab"), "stop_token_ids must be a list"),
    (dict(stop=[""]), "stop strings must not be empty"),
    (dict(stop=[3]), "stop must be a string or a list of strings"),
    (dict(seed=-1), "seed must be None or an integer"),
    (dict(ignore_eos="yes"), "ignore_eos must be True or False"),
])
def test_bad_sampling_params_say_what_to_fix(kw, msg):
    with pytest.raises(ValueError, match=msg):
        SamplingParams(**kw)


def test_good_values_normalised():
    sp = SamplingParams(temperature=1, top_p=1, stop="END", stop_token_ids=(5, 6))
    assert sp.temperature == 1.0 and isinstance(sp.temperature, float)
    assert sp.stop == ["END"] and sp.stop_token_ids == [5, 6]
    assert SamplingParams(top_p=1e-6).top_p == 1e-6
    assert SamplingParams(stop=None).stop == []


def test_request_params_adds_eos_unless_ignored_and_derives_seed():
    sp = SamplingParams(stop_token_ids=[7], temperature=0.5)
    rp = sp.request_params(eos_token_ids=[2, 7], engine_seed=3, request_index=4)
    assert list(rp.stop_token_ids) == [7, 2]
    assert rp.seed == derive_seed(3, 4) and rp.stream == 0
    rp2 = SamplingParams(ignore_eos=True, seed=11).request_params(eos_token_ids=[2], engine_seed=3, request_index=4)
    assert list(rp2.stop_token_ids) == [] and rp2.seed == 11


def test_derived_seeds_differ_by_index_and_engine_seed():
    seeds = {derive_seed(e, i) for e in range(4) for i in range(64)}
    assert len(seeds) == 256
    assert all(0 <= s < 2**64 for s in seeds)
