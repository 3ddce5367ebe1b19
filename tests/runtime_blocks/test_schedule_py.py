"""Python bindings of the fan-out schedule and the n-gram fast backup (saguaro._core)."""
from __future__ import annotations

import functools
import math
import random

import pytest

from saguaro import _core


def _closed_form(a: float, r: float, k: int, budget: int) -> list[int]:
    """Independent re-derivation of docs/algorithm.md §2.2 (raise shares < 1 to 1, then largest remainder)."""
    a = min(max(a, 1e-3), 0.999)
    e = 1.0 / (1.0 + r)
    w = [a ** (j * e) for j in range(k)] + [a ** (k * e) * (1.0 - a) ** (-e)]
    pinned = [False] * (k + 1)
    while True:
        free_budget = budget - sum(pinned)
        free_w = sum(x for x, p in zip(w, pinned) if not p)
        shares = [1.0 if p else free_budget * x / free_w for x, p in zip(w, pinned)]
        low = [j for j in range(k + 1) if not pinned[j] and shares[j] < 1.0]
        if not low:
            break
        for j in low:
            pinned[j] = True
    out = [max(1, math.floor(s + 1e-9)) for s in shares]
    frac = [-1.0 if pinned[j] else shares[j] - out[j] for j in range(k + 1)]

    def before(x: int, y: int) -> int:
        # fractional part, then weight, descending; values within 1e-9 are ties, won by the lower position
        for vx, vy in ((frac[x], frac[y]), (w[x], w[y])):
            if vx - vy > 1e-9 * max(1.0, abs(vy)):
                return -1
            if vy - vx > 1e-9 * max(1.0, abs(vx)):
                return 1
        return x - y

    order = sorted(range(k + 1), key=functools.cmp_to_key(before))
    for i in range(budget - sum(out)):
        out[order[i % (k + 1)]] += 1
    return out


@pytest.mark.parametrize("a", [0.0, 0.2, 0.5, 0.7, 0.9, 0.99, 1.0])
@pytest.mark.parametrize("r", [0.3, 1.0, 2.5])
@pytest.mark.parametrize("k,budget", [(1, 2), (1, 5), (2, 10), (4, 6), (4, 20), (6, 30)])
def test_geometric_matches_independent_closed_form(a: float, r: float, k: int, budget: int) -> None:
    f = _core.FanoutSchedule.geometric(a, r, k, budget)
    assert f == _closed_form(a, r, k, budget)
    assert sum(f) == budget and min(f) >= 1 and len(f) == k + 1


def test_geometric_examples_and_small_budget() -> None:
    assert _core.FanoutSchedule.geometric(0.5, 1.0, 2, 10) == [4, 3, 3]
    assert _core.FanoutSchedule.geometric(0.9, 1.0, 4, 2) == [1, 0, 0, 0, 1]
    assert _core.FanoutSchedule.uniform(3, 6) == [2, 2, 1, 1]


def test_schedule_tracks_live_acceptance() -> None:
    s = _core.FanoutSchedule(4, budget=12, initial_acceptance=0.5)
    assert s.k == 4 and s.budget == 12 and s.kind == "geometric"
    before = s.fanout()
    rng = random.Random(0)
    for _ in range(2000):
        n = 0
        while n < 4 and rng.random() < 0.9:
            n += 1
        s.observe_acceptance(n, 4)
    assert abs(s.acceptance() - 0.9) < 0.05
    assert s.acceptance(after_miss=True) == pytest.approx(0.5)
    after = s.fanout()
    assert sum(after) == 12 and after[4] > before[4]
    assert after == _core.FanoutSchedule.geometric(s.acceptance(), s.r(), 4, 12)


def test_fit_of_r_from_hits() -> None:
    s = _core.FanoutSchedule(4)
    rng = random.Random(1)
    for i in range(20000):
        f = (1, 2, 3, 4)[i % 4]
        s.observe_hit(i % 5, f, rng.random() >= 0.5 * f ** -2.0)
    assert s.hit_observations == 20000
    assert abs(s.r() - 2.0) < 0.2


def test_manual_and_validation_errors() -> None:
    s = _core.FanoutSchedule(2, kind="manual", manual=[3, 2, 1], manual_after_miss=[1, 1, 4])
    assert s.fanout() == [3, 2, 1] and s.fanout(after_miss=True) == [1, 1, 4]
    with pytest.raises(ValueError, match="F_0..F_K"):
        _core.FanoutSchedule(2, kind="manual", manual=[1, 1])
    with pytest.raises(ValueError, match="negative"):
        _core.FanoutSchedule(2, kind="manual", manual=[1, -1, 1])
    with pytest.raises(ValueError, match="kind"):
        _core.FanoutSchedule(2, kind="triangular")
    with pytest.raises(ValueError, match="kind='manual'"):
        _core.FanoutSchedule(2, manual=[1, 1, 1])
    with pytest.raises(ValueError, match="budget"):
        _core.FanoutSchedule(2, budget=0)
    with pytest.raises(ValueError, match="k must be"):
        _core.FanoutSchedule.geometric(0.5, 1.0, 0, 4)
    with pytest.raises(ValueError, match="accepted"):
        _core.FanoutSchedule(2).observe_acceptance(3, 2)


def test_ngram_propose() -> None:
    assert _core.ngram_propose([1, 2, 3, 4, 9, 1, 2, 3], 2, 10) == [4, 9]
    assert _core.ngram_propose([7, 8, 7, 8], 5, 10) == [7, 8, 7, 8, 7]
    ctx = [1, 2, 3]
    toks = _core.ngram_propose(ctx, 3, 1000, seed=5, stream=2)
    expected = [int(_core_uniform(5, 2, len(ctx) + t) * 1000) for t in range(3)]
    assert toks == expected
    with pytest.raises(ValueError, match="token id"):
        _core.ngram_propose([1, 99], 2, 10)
    with pytest.raises(ValueError, match="max_ngram"):
        _core.ngram_propose([1], 2, 10, max_ngram=1, min_ngram=2)


def _core_uniform(seed: int, stream: int, position: int) -> float:
    """keyed_uniform with purpose kFastBackup = 4, from the pure NumPy reference (independent of the C++)."""
    from saguaro.kernels.reference import keyed_uniform

    return float(keyed_uniform(seed, stream, position, 4))
