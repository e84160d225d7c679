"""Every rank reading its own sequences gives the batches rank 0 would have broadcast, bit for bit."""
from __future__ import annotations

import pickle

import pytest
import torch
import torch.distributed as dist

from longctx.data import DocumentDataset, StepSampler
from longctx.model import ModelConfig
from longctx.runtime.config import ParallelConfig
from longctx.runtime.step_source import StepSource, make_planner

pytestmark = pytest.mark.timeout(300)

STEPS = 6


def _sampler(prefix: str) -> StepSampler:
    return StepSampler(DocumentDataset(prefix), tokens_per_step=1024, max_doc_tokens=384, seed=3)


def per_rank_reads_vs_broadcast(prefix: str) -> dict:
    """On every rank: STEPS steps from `StepSource` (each rank reads) next to rank 0's tokens broadcast whole."""
    planner = make_planner(ParallelConfig(mode="static", cp=1), ModelConfig(), dist.get_world_size())
    source = StepSource(_sampler(prefix), planner)
    reference = _sampler(prefix) if dist.get_rank() == 0 else None
    mismatches, payload_bytes, token_bytes = [], [], []
    source.prefetch()
    for step in range(STEPS):
        taken = source.take()
        if step < STEPS - 1:
            source.prefetch()
        broadcast = [[torch.from_numpy(a.astype("int64")) for a in reference.next_step()] if reference else None]
        dist.broadcast_object_list(broadcast, src=0)
        same = len(broadcast[0]) == len(taken.sequences) and all(
            a.dtype == b.dtype and torch.equal(a, b) for a, b in zip(broadcast[0], taken.sequences))
        if not same:
            mismatches.append(step)
        payload_bytes.append(taken.broadcast_bytes)
        token_bytes.append(len(pickle.dumps(broadcast[0])))
    source.close()
    return {"mismatches": mismatches, "payload_bytes": payload_bytes, "token_bytes": token_bytes}


def test_each_rank_reads_bit_identical_batches_and_broadcasts_only_piece_ids(gloo_pool, tiny_dataset):
    results = gloo_pool(4).run(per_rank_reads_vs_broadcast, tiny_dataset)
    for rank, result in enumerate(results):
        assert result["mismatches"] == [], f"rank {rank}: steps {result['mismatches']} differ from the broadcast"
    assert len({tuple(r["payload_bytes"]) for r in results}) == 1, "ranks disagree on the bytes broadcast"
    payload, tokens = results[0]["payload_bytes"], results[0]["token_bytes"]
    assert all(p < t for p, t in zip(payload, tokens)), f"payload {payload} B vs the tokens alone {tokens} B"


def test_piece_ids_payload_does_not_grow_with_the_tokens_of_a_piece():
    from longctx.data import Piece
    from longctx.runtime.step_source import pieces_array

    short = len(pickle.dumps(pieces_array([Piece(7, 0, 10)])))
    long = len(pickle.dumps(pieces_array([Piece(7, 0, 10_000_000)])))
    assert short == long
