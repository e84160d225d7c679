"""Zigzag sharding: round trip, chunk sizes, ownership, positions and balance."""
from __future__ import annotations

import pytest
import torch

from longctx.attention import ZigzagSharding

LENGTHS = [[1, 7, 300, 33], [403], [1] * 37, [2], [5, 1, 64, 9, 17]]


def _cu(lengths):
    return [0, *torch.cumsum(torch.tensor(lengths), 0).tolist()]


@pytest.mark.parametrize("world_size", [1, 2, 3, 4, 5, 8])
@pytest.mark.parametrize("lengths", LENGTHS)
def test_shard_then_unshard_is_identity_and_every_token_is_owned_once(lengths, world_size):
    sharding = ZigzagSharding(_cu(lengths), world_size)
    x = torch.randn(sum(lengths), 3)
    shards = [sharding.shard(x, r) for r in range(world_size)]
    assert torch.equal(sharding.unshard(shards), x)
    owned = torch.cat([sharding.token_index(r) for r in range(world_size)])
    assert torch.equal(torch.sort(owned).values, torch.arange(sum(lengths)))
    assert [s.shape[0] for s in shards] == [sharding.num_tokens(r) for r in range(world_size)]


@pytest.mark.parametrize("world_size", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("lengths", LENGTHS)
def test_each_rank_holds_chunks_r_and_2p_minus_1_minus_r_of_near_equal_size(lengths, world_size):
    sharding = ZigzagSharding(_cu(lengths), world_size)
    base = [n // (2 * world_size) for n in lengths]
    for doc, length in enumerate(lengths):
        owner = torch.empty(length, dtype=torch.int64)
        for r in range(world_size):
            owner[sharding.positions(r)[sharding.doc_ids(r) == doc]] = r
        # in position order: ranks 0..P-1 (chunks 0..P-1), then P-1..0 (chunks P..2P-1)
        steps = (owner[1:] - owner[:-1]).tolist()
        turn = next((i for i, d in enumerate(steps) if d < 0), len(steps))
        assert all(d >= 0 for d in steps[:turn]) and all(d <= 0 for d in steps[turn:]), owner.tolist()
        head, tail = owner[: turn + 1], owner[turn + 1 :]
        for r in range(world_size):
            for part in (head, tail):
                count = int((part == r).sum())
                # chunk P-1 and chunk P are both rank P-1's and adjacent, so it may sit in one half
                limit = 2 * (base[doc] + 1) if r == world_size - 1 else base[doc] + 1
                assert count <= limit, f"doc {doc}, rank {r}: {count} tokens in one half, base {base[doc]}"
            assert 2 * base[doc] <= int((owner == r).sum()) <= 2 * base[doc] + 2


def test_chunk_layout_of_one_document_over_two_ranks():
    sharding = ZigzagSharding([0, 8], 2)
    assert sharding.positions(0).tolist() == [0, 1, 6, 7]
    assert sharding.positions(1).tolist() == [2, 3, 4, 5]


@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_tokens_and_causal_work_are_balanced(world_size):
    lengths = [1, 7, 300, 33, 120, 64]
    sharding = ZigzagSharding(_cu(lengths), world_size)
    tokens = [sharding.num_tokens(r) for r in range(world_size)]
    work = [int((sharding.positions(r) + 1).sum()) for r in range(world_size)]  # causal keys per query
    assert max(tokens) - min(tokens) <= len(lengths), tokens
    assert max(work) / min(work) < 1.05, work


def test_many_short_documents_spread_over_all_ranks():
    sharding = ZigzagSharding([0, *range(1, 41)], 4)
    assert [sharding.num_tokens(r) for r in range(4)] == [10, 10, 10, 10]


def test_positions_and_docs_are_sorted_by_doc_then_position():
    sharding = ZigzagSharding(_cu([1, 7, 300, 33]), 3)
    for r in range(3):
        key = sharding.doc_ids(r) * 10_000 + sharding.positions(r)
        assert torch.all(key[1:] > key[:-1])


def test_rank_with_nothing_has_empty_index():
    sharding = ZigzagSharding([0, 2], 4)
    assert [sharding.num_tokens(r) for r in range(4)] == [1, 1, 0, 0]
    assert sharding.token_index(3).numel() == 0 and sharding.shard(torch.ones(2, 1), 3).shape == (0, 1)
