"""CUDA kernels == CPU twins on random inputs (needs a CUDA device and a build with the CUDA kernels;
skipped with the reason otherwise).

Bit-identical: greedy rows, top-k sets, fan-out lists, keyed uniforms. Probabilities agree to 1e-6
relative (block reductions and CUDA's exp round differently, see cuda/row_primitives.cuh), and sampled
tokens agree except when u * total falls within a few ulps of a CDF step, which the random inputs
here essentially never hit (a mismatch rate above 1e-3 fails).
"""
from __future__ import annotations

import pytest
import torch

import saguaro.kernels as K
from saguaro import _core

pytestmark = pytest.mark.gpu

if not _core.kernels_have_cuda:
    pytest.skip("this build of saguaro has no CUDA kernels (configure with -DSAGUARO_CUDA=ON)", allow_module_level=True)
if not torch.cuda.is_available():
    pytest.skip("no CUDA device visible to torch", allow_module_level=True)


def params_for(rows: int, gen: torch.Generator) -> dict:
    pick = lambda values: [values[int(i)] for i in torch.randint(0, len(values), (rows,), generator=gen)]
    return dict(temperature=pick([0.0, 0.5, 1.0, 1.3]), top_k=pick([0, 0, 1, 7, 100]),
                top_p=pick([1.0, 0.9, 0.5, 1e-6]), saguaro_c=pick([1.0, 0.5, 0.0]), saguaro_topn=pick([0, 1, 3]))


@pytest.mark.parametrize("vocab", [2, 33, 1000, 151_936])
def test_process_probs_cuda_matches_cpu(vocab):
    gen = torch.Generator().manual_seed(vocab)
    logits = torch.randn(16, vocab, generator=gen) * 3
    logits[0, : vocab // 2] = -torch.inf
    params = params_for(16, gen)
    cpu = K.process_probs(logits, **params)
    gpu = K.process_probs(logits.cuda(), **params).cpu()
    assert ((cpu == 0) == (gpu == 0)).all()
    torch.testing.assert_close(gpu, cpu, rtol=1e-6, atol=0)


@pytest.mark.parametrize("vocab", [5, 500, 151_936])
def test_sample_rows_cuda_matches_cpu(vocab):
    gen = torch.Generator().manual_seed(vocab + 1)
    n = 64
    logits = torch.randn(n, vocab, generator=gen) * 2
    params = params_for(n, gen)
    t_cpu, p_cpu = K.sample_rows(logits, seed=list(range(n)), positions=torch.arange(n), **params)
    t_gpu, p_gpu = K.sample_rows(logits.cuda(), seed=list(range(n)), positions=torch.arange(n), **params)
    torch.testing.assert_close(p_gpu.cpu(), p_cpu, rtol=1e-6, atol=0)
    assert (t_gpu.cpu() != t_cpu).float().mean() <= 1e-3


@pytest.mark.parametrize("vocab,k", [(2, 1), (50, 3), (151_936, 4)])
def test_verify_chain_cuda_matches_cpu(vocab, k):
    gen = torch.Generator().manual_seed(vocab + k)
    B = 48
    tl = torch.randn(B, k + 1, vocab, generator=gen) * 2
    ql = tl[:, :k] + torch.randn(B, k, vocab, generator=gen)
    drafts, q = K.sample_rows(ql.reshape(B * k, vocab).contiguous(), seed=3, positions=torch.arange(B * k))
    drafts, q = drafts.view(B, k), q.view(B, k, vocab)
    p = params_for(B, gen)
    args = dict(num_draft=torch.randint(0, k + 1, (B,), generator=gen), deterministic=torch.rand(B, generator=gen) < 0.3,
                temperature=p["temperature"], top_k=p["top_k"], top_p=p["top_p"], seed=list(range(B)), positions=100)
    a_cpu, b_cpu = K.verify_chain(tl, drafts, q, **args)
    a_gpu, b_gpu = K.verify_chain(tl.cuda(), drafts.cuda(), q.cuda(), **args)
    assert torch.equal(a_gpu.cpu(), a_cpu)
    assert (b_gpu.cpu() != b_cpu).float().mean() <= 1e-3


@pytest.mark.parametrize("vocab", [3, 700, 151_936])
def test_fanout_candidates_cuda_matches_cpu(vocab):
    gen = torch.Generator().manual_seed(vocab + 5)
    B, k = 8, 3
    logits = torch.round(torch.randn(B, k + 1, vocab, generator=gen) * 4)  # many ties
    drafted = torch.randint(0, vocab, (B, k), generator=gen, dtype=torch.int32)
    fanout = torch.randint(0, 12, (B, k + 1), generator=gen, dtype=torch.int32)
    cpu = K.fanout_candidates(logits, drafted, fanout, fmax=13)
    gpu = K.fanout_candidates(logits.cuda(), drafted.cuda(), fanout, fmax=13).cpu()
    assert torch.equal(gpu, cpu)


# The split-row fast paths (cuda/row_slices.cuh) cut rows into 4,096-token slices: vocabularies below,
# at and across a slice boundary, and the real one.
SLICED_VOCABS = [2, 4096, 4097, 151_936]


@pytest.mark.parametrize("vocab", SLICED_VOCABS)
def test_greedy_verify_chain_cuda_matches_cpu(vocab):
    """Greedy-only batches take the split path: ties, -inf tokens and long accepted runs included."""
    gen = torch.Generator().manual_seed(vocab + 11)
    B, k = 32, 4
    tl = torch.round(torch.randn(B, k + 1, vocab, generator=gen) * 3)  # ties: the lowest id wins
    tl[::3, :, : vocab // 2] = -torch.inf
    drafts = torch.randint(0, vocab, (B, k), generator=gen, dtype=torch.int32)
    accept = torch.rand(B, k, generator=gen) < 0.8  # most drafts are the target's argmax
    drafts = torch.where(accept, tl[:, :k].argmax(-1).to(torch.int32), drafts)
    args = dict(num_draft=torch.randint(0, k + 1, (B,), generator=gen), temperature=0.0)
    a_cpu, b_cpu = K.verify_chain(tl, drafts, None, **args)
    a_gpu, b_gpu = K.verify_chain(tl.cuda(), drafts.cuda(), None, **args)
    assert torch.equal(a_gpu.cpu(), a_cpu) and torch.equal(b_gpu.cpu(), b_cpu)
    assert (a_cpu > 0).any() and (a_cpu < k).any()


@pytest.mark.parametrize("bad,message", [(float("nan"), "position 2 contain NaN"), (float("inf"), "position 2 contain \\+inf"),
                                         (None, "position 2 have no finite value")])
def test_greedy_verify_chain_cuda_errors_where_the_walk_reaches(bad, message):
    """A bad row reached by the walk raises with its position; one past the walk's end does not."""
    vocab, k = 5000, 3
    tl = torch.zeros(2, k + 1, vocab)
    tl[:, :, 7] = 1.0
    drafts = torch.full((2, k), 7, dtype=torch.int32)
    if bad is None:
        tl[1, 2] = -torch.inf
    else:
        tl[1, 2, 4500] = bad
    drafts[0, 1] = 8  # row 0 stops at position 1: a bad row 0 position 2 would never be read
    tl[0, 2] = tl[1, 2]
    with pytest.raises(ValueError, match="row 1 " + message):
        K.verify_chain(tl.cuda(), drafts.cuda(), None, temperature=0.0)
    a, b = K.verify_chain(tl[:1].cuda(), drafts[:1].cuda(), None, temperature=0.0)
    assert (a.item(), b.item()) == (1, 7)


@pytest.mark.parametrize("vocab", SLICED_VOCABS)
def test_greedy_sample_rows_cuda_matches_cpu(vocab):
    gen = torch.Generator().manual_seed(vocab + 13)
    n = 24
    logits = torch.round(torch.randn(n, vocab, generator=gen) * 3)
    logits[::4, : vocab - 1] = -torch.inf
    t_cpu, p_cpu = K.sample_rows(logits, seed=0, positions=torch.arange(n), temperature=0.0)
    t_gpu, p_gpu = K.sample_rows(logits.cuda(), seed=0, positions=torch.arange(n), temperature=0.0)
    assert torch.equal(t_gpu.cpu(), t_cpu) and torch.equal(p_gpu.cpu(), p_cpu)


@pytest.mark.parametrize("vocab,fmax", [(4097, 8), (151_936, 6), (151_936, 64), (151_936, 65)])
def test_fanout_candidates_cuda_matches_cpu_split_and_radix(vocab, fmax):
    """Fan-outs up to 64 take the split path, above it the radix select: -inf tokens, a drafted token
    excluded, fan-outs larger than the finite tokens, and ties."""
    gen = torch.Generator().manual_seed(vocab + fmax)
    B, k = 4, 3
    logits = torch.round(torch.randn(B, k + 1, vocab, generator=gen) * 4)
    logits[0, 1, 5:] = -torch.inf  # 5 finite tokens, one of them drafted
    drafted = logits[:, :k].argmax(-1).to(torch.int32)
    fanout = torch.randint(0, fmax + 1, (B, k + 1), generator=gen, dtype=torch.int32)
    fanout[0, 1] = fmax
    cpu = K.fanout_candidates(logits, drafted, fanout, fmax=fmax)
    gpu = K.fanout_candidates(logits.cuda(), drafted.cuda(), fanout, fmax=fmax).cpu()
    assert torch.equal(gpu, cpu)
    assert (cpu[0, 1] >= 0).sum() == min(fmax, 4)


def test_cuda_reports_nan_rows_as_value_error():
    logits = torch.zeros(2, 10, device="cuda")
    logits[1, 3] = float("nan")
    with pytest.raises(ValueError, match="row 1 contain NaN"):
        K.process_probs(logits)
