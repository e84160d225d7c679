"""Log-sum-exp merging of partial results, and the head split / block-skip helpers."""
from __future__ import annotations

import pytest
import torch

from longctx.attention.heads import split_heads
from longctx.attention.merge import merge_partial
from longctx.attention.ring import blocks_overlap

NEG_INF = float("-inf")


def _attend(scores, values):
    return torch.softmax(scores, -1) @ values, torch.logsumexp(scores, -1)


def test_merging_two_key_blocks_equals_attention_over_all_keys():
    gen = torch.Generator().manual_seed(0)
    scores, values = torch.randn(5, 3, 12, generator=gen) * 30, torch.randn(12, 4, generator=gen)
    want_out, want_lse = _attend(scores, values)
    out, lse = torch.zeros(5, 3, 4), torch.full((5, 3), NEG_INF)
    for block in (slice(0, 5), slice(5, 12)):
        out, lse = merge_partial(out, lse, *_attend(scores[..., block], values[block]))
    assert torch.allclose(out, want_out, rtol=1e-5, atol=1e-6) and torch.allclose(lse, want_lse)


def test_merge_treats_minus_inf_rows_as_absent_and_never_makes_nan():
    out = torch.ones(2, 1, 3)
    lse = torch.tensor([[NEG_INF], [1.0]])
    block_out, block_lse = torch.full((2, 1, 3), 2.0), torch.tensor([[NEG_INF], [NEG_INF]])
    merged, merged_lse = merge_partial(out * 0, torch.full((2, 1), NEG_INF), block_out * 0, block_lse)
    assert torch.all(merged == 0) and torch.all(merged_lse == NEG_INF)
    merged, merged_lse = merge_partial(out, lse, block_out, block_lse)
    assert merged[1].eq(1).all() and merged_lse[1].item() == 1.0 and not merged.isnan().any()


def test_merge_is_stable_for_huge_lse_gaps():
    out, lse = torch.ones(1, 1, 2), torch.tensor([[1e4]])
    merged, merged_lse = merge_partial(out, lse, torch.full((1, 1, 2), 5.0), torch.tensor([[-1e4]]))
    assert torch.equal(merged, out) and merged_lse.item() == 1e4


@pytest.mark.parametrize("hq,hkv,degree", [(8, 2, 3), (8, 2, 4), (6, 1, 4), (5, 5, 2), (2, 1, 4), (10, 2, 4)])
def test_head_split_covers_every_query_head_once_with_only_the_kv_heads_it_needs(hq, hkv, degree):
    slices = split_heads(hq, hkv, degree)
    sizes = [s.num_q for s in slices]
    assert sum(sizes) == hq and max(sizes) - min(sizes) <= 1
    group = hq // hkv
    for s in slices:
        needed = {h // group for h in range(s.q_start, s.q_end)}
        assert set(range(s.kv_start, s.kv_end)) == needed
        for lo, hi, kv in s.runs():
            assert all((s.q_start + h) // group == s.kv_start + kv for h in range(lo, hi))


def test_blocks_overlap_only_when_some_query_sees_some_key():
    doc = torch.tensor([0, 0, 1])
    assert blocks_overlap(doc, torch.tensor([5, 6, 0]), doc, torch.tensor([0, 1, 0]))
    assert not blocks_overlap(torch.tensor([0]), torch.tensor([2]), torch.tensor([0]), torch.tensor([3]))
    assert not blocks_overlap(torch.tensor([0]), torch.tensor([9]), torch.tensor([1]), torch.tensor([0]))
    assert not blocks_overlap(torch.tensor([0]), torch.tensor([9]), doc[:0], doc[:0])
