"""Distribution tests: the first committed token(s) of a verified speculation follow the target's
processed distribution exactly, for every kind of proposal; planted biases are caught.

Each case runs the batch kernels on B = 200 000 rows that share one target / draft distribution but
differ in their keyed randomness (seed = row index), and compares the empirical distribution of the
committed token with the target's processed p by a chi-square test: good cases need p-value > 1e-4,
planted biases must give p-value < 1e-6.

Power (why 200 000 rows): moving a total-variation mass delta from token a to token b gives the
chi-square statistic a noncentrality lambda = N * delta^2 * (1/p_a + 1/p_b) >= 4 N delta^2. For a 1%
bias (delta = 0.01) and N = 200 000, lambda >= 80. With df <= 31 the 1e-4 critical value is <= 67;
the noncentral statistic has mean df + lambda and sd sqrt(2 (df + 2 lambda)); for df = 15 the
critical value is 44.3 and the statistic has mean 95, sd 18.7, so a 1% bias is rejected with
probability ~0.997 (test_one_percent_bias_is_detectable shows it empirically).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import saguaro.kernels as K

N_ROWS = 200_000
BASE = 1000  # absolute position of x1


def chi_square_pvalue(counts: np.ndarray, probs: np.ndarray) -> float:
    """Pearson chi-square goodness of fit; cells with expected count < 5 are pooled. A count in a
    zero-probability cell gives p-value 0."""
    counts = np.asarray(counts, dtype=np.float64).ravel()
    probs = np.asarray(probs, dtype=np.float64).ravel()
    probs = probs / probs.sum()
    n = counts.sum()
    if counts[probs == 0].sum() > 0:
        return 0.0
    expected = probs * n
    big = expected >= 5
    obs = list(counts[big])
    exp = list(expected[big])
    small_obs, small_exp = counts[(~big) & (probs > 0)].sum(), expected[(~big) & (probs > 0)].sum()
    if small_exp > 0:
        obs.append(small_obs)
        exp.append(small_exp)
    obs, exp = np.array(obs), np.array(exp)
    stat = float(((obs - exp) ** 2 / exp).sum())
    df = len(obs) - 1
    if df < 1:
        return 1.0
    return float(torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64), torch.tensor(stat / 2, dtype=torch.float64)))


def make_logits(seed: int, rows: int, vocab: int, scale: float = 1.5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(rows, vocab, generator=g) * scale).float()


def draft_chain(q_logits: torch.Tensor, k: int, start: int, seeds: torch.Tensor, params: dict):
    """Each row samples x_{start+1}..x_{start+k} from q_logits[start:start+k] with the draft params."""
    B = seeds.shape[0]
    V = q_logits.shape[1]
    logits = q_logits[start : start + k].unsqueeze(0).expand(B, k, V).reshape(B * k, V).contiguous()
    positions = (BASE + start + torch.arange(k, dtype=torch.int64)).repeat(B)
    tokens, q = K.sample_rows(logits, seed=seeds.repeat_interleave(k), positions=positions, **params)
    return tokens.view(B, k), q.view(B, k, V)


def verify_round(p_logits, q_logits, k, start, seeds, target, draft, *, deterministic=False, wrong_q=None, rng=None):
    """One round starting at relative position `start`: returns (accepted, bonus, drafts)."""
    B = seeds.shape[0]
    V = p_logits.shape[1]
    if deterministic:
        drafts = torch.from_numpy(rng.integers(0, V, size=(B, k)).astype(np.int32))
        q = None
    else:
        drafts, q = draft_chain(q_logits, k, start, seeds, draft)
        if wrong_q is not None:  # planted bias: verify against another q than the one sampled from
            q = K.process_probs(q_logits[start : start + k], **wrong_q).unsqueeze(0).expand(B, k, V).contiguous()
    tl = p_logits[start : start + k + 1].unsqueeze(0).expand(B, k + 1, V).contiguous()
    accepted, bonus = K.verify_chain(tl, drafts, q, deterministic=deterministic, seed=seeds,
                                     positions=BASE + start, **target)
    return accepted, bonus, drafts


def first_tokens(accepted, bonus, drafts):
    return torch.where(accepted >= 1, drafts[:, 0], bonus).numpy()


def target_probs(p_logits, target, rows):
    return K.process_probs(p_logits[rows], **target).double().numpy()


CASES = {
    # name: (vocab, k, target params, draft params, deterministic)
    "sampled_k1": (8, 1, {}, {}, False),
    "sampled_k3": (12, 3, {}, {"temperature": 0.7}, False),
    "saguaro_c1_k3": (16, 3, {}, {"saguaro_c": 1.0, "saguaro_topn": 3}, False),
    "saguaro_c05_k3": (16, 3, {}, {"saguaro_c": 0.5, "saguaro_topn": 3}, False),
    "saguaro_c0_k1": (16, 1, {}, {"saguaro_c": 0.0, "saguaro_topn": 3}, False),
    "saguaro_c0_k3": (10, 3, {"temperature": 0.9}, {"saguaro_c": 0.0, "saguaro_topn": 2}, False),
    "deterministic_k1": (16, 1, {}, {}, True),
    "deterministic_k3": (12, 3, {"temperature": 1.3}, {}, True),
    "topk_topp_both_k3": (24, 3, {"temperature": 0.8, "top_k": 6, "top_p": 0.9},
                          {"temperature": 1.2, "top_k": 5, "top_p": 0.8, "saguaro_c": 0.5, "saguaro_topn": 2}, False),
    "topk_topp_both_k1": (32, 1, {"top_p": 0.7}, {"top_k": 4}, False),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_first_committed_token_follows_target(name):
    vocab, k, target, draft, det = CASES[name]
    case_seed = sorted(CASES).index(name)
    p_logits = make_logits(100 + case_seed, k + 2, vocab)
    # the draft resembles the target (as a real draft does) so that proposals get accepted
    q_logits = p_logits[: k + 1] + 0.8 * make_logits(200 + case_seed, k + 1, vocab, scale=1.0)
    seeds = torch.arange(N_ROWS, dtype=torch.int64) + 10**6 * case_seed
    rng = np.random.default_rng(case_seed)
    accepted, bonus, drafts = verify_round(p_logits, q_logits, k, 0, seeds, target, draft, deterministic=det, rng=rng)
    first = first_tokens(accepted, bonus, drafts)
    counts = np.bincount(first, minlength=vocab)
    pv = chi_square_pvalue(counts, target_probs(p_logits, target, slice(0, 1))[0])
    assert pv > 1e-4, f"{name}: first committed token deviates from the target (p-value {pv:.3g})"
    assert 0 < float(accepted.float().mean()) or det  # the proposals are actually being accepted sometimes
    if k == 3:
        # Joint law of the first two committed tokens: (x1, x2), (x1, bonus), or (bonus, the first token
        # of the next round, which starts one position later).
        a2, b2, d2 = verify_round(p_logits, q_logits, k, 1, seeds, target, draft, deterministic=det, rng=rng)
        second_next_round = first_tokens(a2, b2, d2)
        acc = accepted.numpy()
        one = first
        two = np.where(acc >= 2, drafts[:, 1].numpy(), np.where(acc == 1, bonus.numpy(), second_next_round))
        joint = np.bincount(one * vocab + two, minlength=vocab * vocab)
        p = target_probs(p_logits, target, slice(0, 2))
        pv2 = chi_square_pvalue(joint, np.outer(p[0], p[1]))
        assert pv2 > 1e-4, f"{name}: the first two committed tokens deviate jointly (p-value {pv2:.3g})"


def test_greedy_and_sampled_rows_mix_in_one_batch():
    vocab, k = 16, 2
    p_logits = make_logits(7, k + 1, vocab)
    q_logits = make_logits(8, k, vocab)
    seeds = torch.arange(N_ROWS, dtype=torch.int64)
    greedy = (torch.arange(N_ROWS) % 10) == 0
    temperature = torch.where(greedy, 0.0, 1.0)
    drafts, q = draft_chain(q_logits, k, 0, seeds, {"temperature": temperature.repeat_interleave(k)})
    tl = p_logits.unsqueeze(0).expand(N_ROWS, k + 1, vocab).contiguous()
    accepted, bonus = K.verify_chain(tl, drafts, q, seed=seeds, positions=BASE, temperature=temperature)
    first = first_tokens(accepted, bonus, drafts)
    am = int(torch.argmax(p_logits[0]))
    assert (first[greedy.numpy()] == am).all()
    counts = np.bincount(first[~greedy.numpy()], minlength=vocab)
    pv = chi_square_pvalue(counts, target_probs(p_logits, {}, slice(0, 1))[0])
    assert pv > 1e-4, f"sampled rows beside greedy rows deviate (p-value {pv:.3g})"


@pytest.mark.parametrize("c", [0.5, 0.0])
def test_planted_bias_ratio_against_q_instead_of_q_tilde(c):
    """Sampling from q~ but verifying with the unadjusted q is biased: the check must catch it."""
    vocab, k = 16, 1
    p_logits = make_logits(31, k + 2, vocab)
    q_logits = make_logits(32, k + 1, vocab)
    seeds = torch.arange(N_ROWS, dtype=torch.int64)
    draft = {"saguaro_c": c, "saguaro_topn": 3}
    accepted, bonus, drafts = verify_round(p_logits, q_logits, k, 0, seeds, {}, draft, wrong_q={})
    counts = np.bincount(first_tokens(accepted, bonus, drafts), minlength=vocab)
    pv = chi_square_pvalue(counts, target_probs(p_logits, {}, slice(0, 1))[0])
    assert pv < 1e-6, f"ratio test against q instead of q~ (C={c}) went undetected (p-value {pv:.3g})"


def test_planted_bias_argmax_acceptance_of_deterministic_proposals():
    """The research engine's rule (accept a random backup token iff it equals the target argmax, else
    draw from p) is biased; a tiny implementation of it must be rejected by the same check."""
    vocab = 16
    p_logits = make_logits(41, 2, vocab)
    p = target_probs(p_logits, {}, slice(0, 1))[0]
    rng = np.random.default_rng(5)
    proposal = rng.integers(0, vocab, size=N_ROWS)
    from_p = rng.choice(vocab, size=N_ROWS, p=p / p.sum())
    first = np.where(proposal == int(np.argmax(p)), proposal, from_p)
    pv = chi_square_pvalue(np.bincount(first, minlength=vocab), p)
    assert pv < 1e-6, f"argmax acceptance went undetected (p-value {pv:.3g})"
    # ... while the kernel's exact rule on the same kind of proposal passes
    seeds = torch.arange(N_ROWS, dtype=torch.int64)
    accepted, bonus, drafts = verify_round(p_logits, p_logits, 1, 0, seeds, {}, {}, deterministic=True,
                                           rng=np.random.default_rng(5))
    pv_ok = chi_square_pvalue(np.bincount(first_tokens(accepted, bonus, drafts), minlength=vocab), p)
    assert pv_ok > 1e-4


def test_one_percent_bias_is_detectable():
    """Empirical power check of the docstring's calculation: 1% of the mass moved between two tokens."""
    vocab = 16
    p = target_probs(make_logits(51, 1, vocab), {}, slice(0, 1))[0]
    biased = p.copy()
    hi, lo = int(np.argmax(p)), int(np.argmin(p))
    biased[hi] -= 0.01
    biased[lo] += 0.01
    rng = np.random.default_rng(11)
    pv = chi_square_pvalue(np.bincount(rng.choice(vocab, size=N_ROWS, p=biased / biased.sum()), minlength=vocab), p)
    assert pv < 1e-4, f"a 1% bias was not detected at N={N_ROWS} (p-value {pv:.3g})"
    pv_null = chi_square_pvalue(np.bincount(rng.choice(vocab, size=N_ROWS, p=p / p.sum()), minlength=vocab), p)
    assert pv_null > 1e-4


def test_chi_square_helper_against_known_values():
    # df = 1, statistic 3.841 -> p = 0.05; df = 2, statistic 2 ln(100) -> p = 0.01 (exact for df 2)
    n = 10_000
    counts = np.array([n / 2 + np.sqrt(3.841458820694124 * n) / 2, n / 2 - np.sqrt(3.841458820694124 * n) / 2])
    assert chi_square_pvalue(counts, np.array([0.5, 0.5])) == pytest.approx(0.05, rel=1e-6)
    assert chi_square_pvalue(np.array([3, 0]), np.array([1.0, 0.0])) == 1.0  # df 0 after pooling
    assert chi_square_pvalue(np.array([3, 1]), np.array([1.0, 0.0])) == 0.0  # count in a zero cell
