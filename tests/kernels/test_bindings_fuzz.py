"""Bad arguments raise ValueError saying what is wrong, never a crash: targeted cases for each rule,
then hypothesis fuzzing of the public wrappers and of saguaro._core directly."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

import saguaro.kernels as K
from saguaro import _core


def raises(match: str, fn, *args, **kwargs):
    with pytest.raises(ValueError, match=match):
        fn(*args, **kwargs)


L2 = torch.randn(3, 10)
L3 = torch.randn(2, 3, 10)
X = torch.zeros(2, 2, dtype=torch.int32)
Q = torch.full((2, 2, 10), 0.1)


@pytest.mark.parametrize("kwargs, match", [
    ({"temperature": -0.5}, "temperature of row 0 is -0.5"),
    ({"temperature": math.nan}, "temperature"),
    ({"temperature": math.inf}, "temperature"),
    ({"top_k": -1}, "top_k of row 0"),
    ({"top_k": 2.5}, "top_k: values must be integers"),
    ({"top_k": 2**40}, "top_k: values must be in"),
    ({"top_p": 0.0}, "top_p of row 0"),
    ({"top_p": 1.01}, "top_p"),
    ({"saguaro_c": -0.1}, "saguaro_c"),
    ({"saguaro_c": 1.5}, "saguaro_c"),
    ({"saguaro_topn": -3}, "saguaro_topn"),
    ({"temperature": [1.0, 1.0]}, "expected one value per row \\(3\\), got 2"),
    ({"temperature": torch.ones(2, 2)}, "got a tensor of shape \\[2, 2\\]"),
    ({"temperature": "hot"}, "temperature: expected a number"),
    ({"top_k": [1, "a", 2]}, "every value must be a number"),
])
def test_process_probs_bad_parameters(kwargs, match):
    raises(match, K.process_probs, L2, **kwargs)


def test_bad_tensors():
    raises("logits: expected a torch.Tensor", K.process_probs, [[1.0, 2.0]])
    raises("logits: expected dtype torch.float32", K.process_probs, L2.double())
    raises("logits: expected 2 dimensions", K.process_probs, torch.randn(10))
    raises("vocabulary dimension is empty", K.process_probs, torch.randn(2, 0))
    raises("must be C-contiguous", K.process_probs, torch.randn(10, 3).t())
    raises("row 1 contain NaN", K.process_probs, torch.tensor([[0.0, 1.0], [math.nan, 0.0]]))
    raises("no finite value", K.process_probs, torch.full((1, 4), -math.inf))
    raises("\\+inf", K.process_probs, torch.tensor([[0.0, math.inf]]))
    raises("draft_tokens: expected dtype int32", K.verify_chain, L3, X.long(), Q)
    raises("draft_tokens: expected shape \\[2, 2\\], got \\[2, 3\\]", K.verify_chain, L3, torch.zeros(2, 3, dtype=torch.int32), Q)
    raises("q: expected shape \\[2, 2, 10\\]", K.verify_chain, L3, X, torch.zeros(2, 2, 9))
    raises("q is null", K.verify_chain, L3, X, None)
    raises("num_draft\\[1\\] = 3 must be in \\[0, K=2\\]", K.verify_chain, L3, X, Q, num_draft=[2, 3])
    raises("draft_tokens\\[0\\]\\[1\\] = 10", K.verify_chain, L3, torch.tensor([[0, 10], [0, 0]], dtype=torch.int32), Q)
    raises("seed: 18446744073709551616 is outside", K.verify_chain, L3, X, Q, seed=2**64)
    raises("seed: .* is outside", K.verify_chain, L3, X, Q, seed=-1)
    raises("seed: expected an integer tensor", K.verify_chain, L3, X, Q, seed=torch.ones(2))
    raises("positions: values must be integers", K.verify_chain, L3, X, Q, positions=1.5)
    raises("target_logits: expected 3 dimensions", K.verify_chain, L2, X, Q)
    raises("row 0 position 0 contain NaN", K.verify_chain, torch.full((2, 3, 10), math.nan), X, Q)
    raises("fanout: expected K \\+ 1 = 3 values", K.fanout_candidates, L3, X, [1, 2])
    raises("fanout: values must be >= 0", K.fanout_candidates, L3, X, [1, -2, 1])
    raises("fanout: expected integers", K.fanout_candidates, L3, X, [1.5, 2, 1])
    raises("fmax: expected an integer >= the largest fan-out", K.fanout_candidates, L3, X, [1, 4, 1], fmax=2)
    raises("drafted\\[0\\]\\[0\\] = 10", K.fanout_candidates, L3, torch.full((2, 2), 10, dtype=torch.int32), [1, 1, 1])
    raises("purpose: expected an integer", K.keyed_uniform, 0, 0, 0, -1)
    raises("positions: value out of range", K.keyed_uniform, 0, 0, 2**70, 1)


def test_cuda_tensors_without_cuda_kernels_are_refused():
    if K.cuda_available():
        pytest.skip("this build and machine run CUDA kernels")
    # A CUDA tensor cannot be made here; _core must still refuse a non-CPU device clearly.
    meta = torch.empty(2, 3, device="meta")
    raises("logits: could not be exported through DLPack", K.process_probs, meta)


def test_core_rejects_wrong_objects_directly():
    z = torch.zeros(3, dtype=torch.int32)
    f = torch.ones(3)
    out = torch.empty(3, 10)
    raises("logits: expected a tensor", _core.process_probs, None, f, z, f, f, z, out)
    raises("temperature: expected a tensor", _core.process_probs, L2, [1, 2, 3], z, f, f, z, out)
    raises("top_k: expected dtype int32", _core.process_probs, L2, f, f, f, f, z, out)
    raises("out: expected shape \\[3, 10\\]", _core.process_probs, L2, f, z, f, f, z, torch.empty(3, 9))
    raises("out: expected dtype float32", _core.process_probs, L2, f, z, f, f, z, out.double())


# ---- hypothesis fuzzing ----

dtypes = st.sampled_from([torch.float32, torch.float64, torch.float16, torch.int32, torch.int64, torch.uint8, torch.bool])
shapes = st.lists(st.integers(0, 5), min_size=0, max_size=4)
floats = st.floats(allow_nan=True, allow_infinity=True, width=32)
scalar_param = st.one_of(floats, st.integers(-(2**65), 2**65), st.booleans(), st.none(), st.text(max_size=2))
param = st.one_of(scalar_param, st.lists(scalar_param, max_size=6))


@st.composite
def tensors(draw):
    shape = draw(shapes)
    dtype = draw(dtypes)
    kind = draw(st.sampled_from(["randn", "fill", "ints"]))
    if kind == "fill":
        t = torch.full(shape, draw(floats)).to(dtype) if dtype.is_floating_point else torch.zeros(shape, dtype=dtype)
    elif kind == "ints" or not dtype.is_floating_point:
        t = torch.randint(-2, 12, shape).to(dtype)
    else:
        t = (torch.randn(shape) * 3).to(dtype)
    if draw(st.booleans()) and t.dim() >= 2:
        t = t.transpose(0, 1)
    return t


def call_ok_or_value_error(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except ValueError:
        pass


FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(tensors(), param, param, param, param, param)
def test_fuzz_process_probs(logits, t, k, p, c, n):
    kwargs = {name: v for name, v in zip(("temperature", "top_k", "top_p", "saguaro_c", "saguaro_topn"), (t, k, p, c, n))
              if v is not None}
    call_ok_or_value_error(K.process_probs, logits, **kwargs)


@FUZZ
@given(tensors(), param, param, param, param)
def test_fuzz_sample_rows(logits, t, seed, positions, n):
    kwargs = {name: v for name, v in zip(("temperature", "seed", "positions", "saguaro_topn"), (t, seed, positions, n))
              if v is not None}
    call_ok_or_value_error(K.sample_rows, logits, **kwargs)


@FUZZ
@given(tensors(), tensors(), st.one_of(st.none(), tensors()), param, param, param, param)
def test_fuzz_verify_chain(logits, drafts, q, num_draft, det, temperature, seed):
    kwargs = {name: v for name, v in zip(("num_draft", "deterministic", "temperature", "seed"),
                                         (num_draft, det, temperature, seed)) if v is not None}
    call_ok_or_value_error(K.verify_chain, logits, drafts, q, **kwargs)


@FUZZ
@given(st.integers(1, 3), st.integers(0, 3), st.integers(1, 12), st.integers(-2, 14), param, st.integers(-1, 9))
def test_fuzz_verify_chain_values(B, k, vocab, token, temperature, fmax):
    logits = torch.randn(B, k + 1, vocab)
    drafts = torch.full((B, k), token, dtype=torch.int32)
    q = torch.softmax(torch.randn(B, k, vocab), -1)
    kwargs = {} if temperature is None else {"temperature": temperature}
    call_ok_or_value_error(K.verify_chain, logits, drafts, q, **kwargs)
    call_ok_or_value_error(K.verify_chain, logits, drafts, None, deterministic=True, **kwargs)
    fan = [max(fmax - 1, 0)] * (k + 1)
    call_ok_or_value_error(K.fanout_candidates, logits, drafts, fan, fmax=fmax)


@FUZZ
@given(tensors(), tensors(), st.one_of(param, tensors()), st.one_of(st.none(), st.integers(-1, 2**33)))
def test_fuzz_fanout_candidates(logits, drafted, fanout, fmax):
    call_ok_or_value_error(K.fanout_candidates, logits, drafted, fanout, fmax=fmax)


@FUZZ
@given(st.lists(st.one_of(tensors(), st.none(), st.integers()), min_size=14, max_size=14))
def test_fuzz_core_verify_chain_directly(args):
    call_ok_or_value_error(_core.verify_chain, *args[:13], 0)


@FUZZ
@given(st.lists(st.one_of(tensors(), st.none()), min_size=12, max_size=12))
def test_fuzz_core_sample_and_process_directly(args):
    call_ok_or_value_error(_core.sample_rows, *args[:11], 0)
    call_ok_or_value_error(_core.process_probs, *args[:7], 0)
    call_ok_or_value_error(_core.fanout_candidates, *args[:4], 0)
