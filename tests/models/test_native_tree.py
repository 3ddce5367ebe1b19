"""Tree steps, ragged extends and truncation of the native adapter against plain forwards (fp32)."""
from __future__ import annotations

import pytest
import torch

from conftest import make_hf, native_from_hf

TOL = 1e-5


def _rand(n: int, seed: int) -> list[int]:
    return torch.randint(0, 97, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def _fresh_last(adapter, tokens: list[int]) -> torch.Tensor:
    out = adapter.prefill([10_000], [tokens])[0]
    adapter.release(10_000)
    return out


@pytest.mark.parametrize("family", ["qwen2-untied", "qwen3", "llama3-scaled"])
def test_tree_step_equals_each_branch_alone(family):
    adapter = native_from_hf(make_hf(family))
    seqs = {1: _rand(20, 1), 2: _rand(26, 2)}
    adapter.prefill(list(seqs), list(seqs.values()))
    # rows interleave the two sequences; visible lengths differ per row
    seq_ids = [1, 2, 1, 2, 1]
    visible = [18, 26, 20, 22, 19]
    depth_count = 4
    branch = [_rand(depth_count, 100 + i) for i in range(len(seq_ids))]
    for d in range(depth_count):
        got = adapter.tree_step(seq_ids, visible, [b[d] for b in branch], d)
        assert got.shape == (5, 97) and got.dtype == torch.float32 and got.is_contiguous()
        for i, (s, v) in enumerate(zip(seq_ids, visible)):
            ref = _fresh_last(adapter, seqs[s][:v] + branch[i][: d + 1])
            assert (got[i] - ref).abs().max().item() <= TOL, (d, i)
    assert adapter.length(1) == 20 and adapter.length(2) == 26
    # the sequences are untouched: extending them equals a fresh forward
    more = _rand(3, 9)
    ext = adapter.extend([1], [more])
    assert (ext[-1] - _fresh_last(adapter, seqs[1] + more)).abs().max().item() <= TOL


def test_tree_check_catches_a_branch_seeing_another_branch():
    adapter = native_from_hf(make_hf("qwen2-untied"))
    seq = _rand(12, 3)
    adapter.prefill([1], [seq])
    a, b = _rand(2, 4), _rand(2, 5)
    adapter.tree_step([1, 1], [12, 12], [a[0], b[0]], 0)
    got = adapter.tree_step([1, 1], [12, 12], [a[1], b[1]], 1)
    own = _fresh_last(adapter, seq + [a[0], a[1]])
    other = _fresh_last(adapter, seq + [b[0], a[1]])   # what a leaky mask would give
    assert (got[0] - own).abs().max().item() <= TOL
    assert (got[0] - other).abs().max().item() > 1e-3


def test_new_tree_discards_old_scratch_and_positions_follow_visible():
    adapter = native_from_hf(make_hf("llama3-scaled"))
    seq = _rand(15, 6)
    adapter.prefill([4], [seq])
    adapter.tree_step([4, 4, 4], [15, 15, 15], [1, 2, 3], 0)
    adapter.tree_step([4, 4, 4], [15, 15, 15], [4, 5, 6], 1)
    got0 = adapter.tree_step([4], [10], [7], 0)
    got1 = adapter.tree_step([4], [10], [8], 1)
    assert (got0[0] - _fresh_last(adapter, seq[:10] + [7])).abs().max().item() <= TOL
    assert (got1[0] - _fresh_last(adapter, seq[:10] + [7, 8])).abs().max().item() <= TOL


def test_ragged_extend_equals_separate_extends():
    adapter = native_from_hf(make_hf("qwen3"))
    single = native_from_hf(make_hf("qwen3"))
    prompts = {1: _rand(7, 10), 2: _rand(13, 11), 3: _rand(4, 12)}
    adapter.prefill(list(prompts), list(prompts.values()))
    new = [_rand(3, 20), _rand(1, 21), _rand(5, 22)]
    got = adapter.extend([1, 2, 3], new)
    assert got.shape == (9, 97)
    rows = []
    for (s, p), t in zip(prompts.items(), new):
        single.prefill([s], [p])
        rows.append(single.extend([s], [t]))
    assert (got - torch.cat(rows)).abs().max().item() <= TOL
    assert [adapter.length(s) for s in (1, 2, 3)] == [10, 14, 9]


def test_truncate_then_extend_equals_fresh_forward():
    adapter = native_from_hf(make_hf("qwen2-tied"))
    seq = _rand(30, 13)
    adapter.prefill([5], [seq[:20]])
    adapter.extend([5], [seq[20:30]])
    adapter.truncate(5, 17)
    assert adapter.length(5) == 17
    other = _rand(4, 14)
    got = adapter.extend([5], [other])
    fresh = native_from_hf(make_hf("qwen2-tied"))
    fresh.prefill([0], [seq[:17]])
    ref = fresh.extend([0], [other])
    assert (got - ref).abs().max().item() <= TOL


def test_released_slot_is_reused_cleanly():
    adapter = native_from_hf(make_hf("qwen2-untied"))
    a, b = _rand(25, 15), _rand(6, 16)
    adapter.prefill([1], [a])
    adapter.release(1)
    got = adapter.prefill([2], [b])
    fresh = native_from_hf(make_hf("qwen2-untied")).prefill([0], [b])
    assert (got - fresh).abs().max().item() <= TOL
