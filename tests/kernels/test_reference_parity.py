"""The C++ CPU kernels equal the pure PyTorch/NumPy reference on fresh random inputs: integers
exactly, probabilities to 1e-6 relative."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import saguaro.kernels as K
import saguaro.kernels.reference as R
from saguaro.kernels import Purpose


def assert_probs_close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype == torch.float32
    assert ((a == 0) == (b == 0)).all(), "the kept token sets differ"
    torch.testing.assert_close(a, b, rtol=1e-6, atol=0)


# ---- Philox ----

def test_numpy_philox_known_answers():
    z = R.philox4x32_10(np.zeros(4, np.uint32), np.zeros(2, np.uint32))
    assert [hex(v) for v in z] == ["0x6627e8d5", "0xe169c58d", "0xbc57ac4c", "0x9b00dbd8"]
    f = R.philox4x32_10(np.full(4, 0xFFFFFFFF, np.uint32), np.full(2, 0xFFFFFFFF, np.uint32))
    assert [hex(v) for v in f] == ["0x408f276d", "0x41c83b0e", "0xa20bc7c6", "0x6d5451fd"]


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.integers(-(2**63), 2**63 - 1), st.integers(0, 2**32 - 1))
def test_keyed_uniform_matches_reference(seed, stream, position, purpose):
    u = K.keyed_uniform(seed, stream, position, purpose)
    assert u == R.keyed_uniform(seed, stream, position, purpose)
    assert 0.0 <= u < 1.0


# ---- process_probs ----

row_params = st.fixed_dictionaries({
    "temperature": st.sampled_from([0.0, 0.3, 0.7, 1.0, 1.5, 4.0]),
    "top_k": st.sampled_from([0, 0, 1, 2, 5, 70, 10_000]),
    "top_p": st.sampled_from([1.0, 1.0, 0.95, 0.8, 0.5, 1e-6]),
    "saguaro_c": st.sampled_from([1.0, 0.5, 0.0]),
    "saguaro_topn": st.sampled_from([0, 1, 3, 100]),
})


def random_logits(seed: int, rows: int, vocab: int, with_inf: bool) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    l = torch.randn(rows, vocab, generator=g) * 3
    if vocab > 4:  # ties and small-integer logits
        l[:, 1] = l[:, 0]
        l[0] = torch.round(l[0])
    if with_inf and vocab > 1:
        mask = torch.rand(rows, vocab, generator=g) < 0.2
        mask[:, 0] = False
        l[mask] = -torch.inf
    return l.float().contiguous()


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.sampled_from([2, 3, 17, 100, 1000]), st.integers(0, 2**31), st.booleans(),
       st.lists(row_params, min_size=6, max_size=6))
def test_process_probs_matches_reference(rows, vocab, seed, with_inf, params):
    logits = random_logits(seed, rows, vocab, with_inf)
    per_row = {k: [params[r][k] for r in range(rows)] for k in params[0]}
    assert_probs_close(K.process_probs(logits, **per_row), R.process_probs(logits, **per_row))


def test_process_probs_large_vocab_matches_reference():
    logits = random_logits(3, 4, 151_936, True)
    params = dict(temperature=[1.0, 0.7, 0.0, 1.0], top_k=[0, 50, 0, 0], top_p=[1.0, 0.9, 1.0, 0.95],
                  saguaro_c=[1.0, 0.5, 0.0, 0.0], saguaro_topn=[0, 4, 4, 3])
    assert_probs_close(K.process_probs(logits, **params), R.process_probs(logits, **params))


# ---- sample_rows ----

@settings(max_examples=40, deadline=None)
@given(st.integers(1, 8), st.sampled_from([2, 5, 64, 500]), st.integers(0, 2**31), row_params,
       st.integers(0, 2**64 - 1), st.integers(0, 2**40))
def test_sample_rows_matches_reference(n, vocab, seed, params, key, position):
    logits = random_logits(seed, n, vocab, True)
    positions = torch.arange(n, dtype=torch.int64) + position
    seeds = [(key + i) % 2**64 for i in range(n)]
    t1, p1 = K.sample_rows(logits, seed=seeds, stream=7, positions=positions, **params)
    t2, p2 = R.sample_rows(logits, seed=seeds, stream=7, positions=positions, **params)
    assert torch.equal(t1, t2)
    assert_probs_close(p1, p2)
    assert (p1[torch.arange(n), t1.long()] > 0).all()


def test_sample_inverse_cdf_reference_rules():
    p = torch.tensor([[0.0, 0.25, 0.0, 0.5, 0.25, 0.0]])
    for u, want in [(0.0, 1), (0.25, 3), (0.75, 4), (0.9999999, 4)]:
        assert int(R.sample_inverse_cdf(p, torch.tensor([u], dtype=torch.float64))[0]) == want
    assert int(R.sample_inverse_cdf(torch.zeros(1, 3), torch.tensor([0.5], dtype=torch.float64))[0]) == -1


# ---- verify_chain ----

@settings(max_examples=60, deadline=None)
@given(st.integers(1, 8), st.integers(1, 4), st.sampled_from([2, 3, 16, 200]), st.integers(0, 2**31),
       st.lists(row_params, min_size=8, max_size=8), st.lists(st.booleans(), min_size=8, max_size=8),
       st.lists(st.integers(0, 4), min_size=8, max_size=8), st.integers(0, 2**63))
def test_verify_chain_matches_reference(B, k, vocab, seed, params, det, nd, key):
    g = torch.Generator().manual_seed(seed)
    tl = random_logits(seed, B * (k + 1), vocab, True).view(B, k + 1, vocab).contiguous()
    ql = (tl[:, :k] + torch.randn(B, k, vocab, generator=g)).contiguous()
    dparams = {kk: [params[b][kk] for b in range(B) for _ in range(k)] for kk in params[0]}
    drafts, q = K.sample_rows(ql.view(B * k, vocab), seed=key, positions=torch.arange(B * k), **dparams)
    drafts, q = drafts.view(B, k), q.view(B, k, vocab)
    target = {kk: [params[b][kk] for b in range(B)] for kk in ("temperature", "top_k", "top_p")}
    args = dict(num_draft=[min(nd[b], k) for b in range(B)], deterministic=det[:B], seed=[key + b for b in range(B)],
                stream=3, positions=torch.arange(B) * 10, **target)
    a1, b1 = K.verify_chain(tl, drafts, q, **args)
    a2, b2 = R.verify_chain(tl, drafts, q, **args)
    assert torch.equal(a1, a2) and torch.equal(b1, b2)
    assert ((a1 >= 0) & (a1 <= torch.tensor(args["num_draft"], dtype=torch.int32))).all()
    assert ((b1 >= 0) & (b1 < vocab)).all()


def test_verify_chain_uses_the_keyed_uniforms():
    # one sampled row, K = 1: accepted iff u(ACCEPT) * q(x) < p(x)
    tl = torch.tensor([[[0.0, 1.0, 2.0], [0.5, 0.0, 0.0]]])
    q = torch.tensor([[[0.2, 0.3, 0.5]]])
    p = K.process_probs(tl[0, :1])[0]
    for seed in range(50):
        a, _ = K.verify_chain(tl, torch.tensor([[2]], dtype=torch.int32), q, seed=seed, positions=9)
        u = K.keyed_uniform(seed, 0, 9, Purpose.ACCEPT)
        assert int(a[0]) == int(u * 0.5 < float(p[2]))


# ---- fanout_candidates ----

@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.integers(0, 3), st.sampled_from([2, 7, 50, 300]), st.integers(0, 2**31),
       st.lists(st.integers(0, 80), min_size=16, max_size=16), st.booleans())
def test_fanout_candidates_matches_reference(B, k, vocab, seed, fan, with_inf):
    logits = random_logits(seed, B * (k + 1), vocab, with_inf).view(B, k + 1, vocab)
    logits = torch.round(logits).contiguous()  # many ties
    g = torch.Generator().manual_seed(seed)
    drafted = torch.randint(-1, vocab, (B, k), generator=g, dtype=torch.int32)
    fanout = torch.tensor(fan[: B * (k + 1)], dtype=torch.int32).view(B, k + 1)
    out = K.fanout_candidates(logits, drafted, fanout, fmax=int(fanout.max()) + 2)
    ref = R.fanout_candidates(logits, drafted, fanout, fmax=int(fanout.max()) + 2)
    assert torch.equal(out, ref)


def test_fanout_order_is_position_major_probability_descending():
    logits = torch.tensor([[[0.0, 2.0, 2.0, 1.0], [3.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 5.0]]])
    out = K.fanout_candidates(logits, torch.tensor([[2, 0]], dtype=torch.int32), [3, 2, 1], fmax=3)
    assert out.tolist() == [[[1, 3, 0], [2, 3, -1], [3, -1, -1]]]
