"""Bad input raises AttentionInputError naming the field, before any communication."""
from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from longctx.attention import AttentionInputError, BackendUnavailableError, ZigzagSharding, context_parallel_attention


def _qkv(tokens=10, hq=4, hkv=2, d=8, dtype=torch.float32):
    return torch.randn(tokens, hq, d, dtype=dtype), torch.randn(tokens, hkv, d), torch.randn(tokens, hkv, d)


@pytest.mark.parametrize(
    "cu_seqlens,message",
    [
        ([0, 5, 5, 10], "strictly increasing"),
        ([0, 6, 4, 10], "strictly increasing"),
        ([1, 5, 10], "start at 0"),
        ([0, 5, 12], "cu_seqlens[-1]"),
        ([0, 5, 8], "cu_seqlens[-1]"),
        ([[0, 10]], "1-D"),
        ([0.0, 10.0], "integers"),
    ],
)
def test_bad_cu_seqlens_is_rejected(cu_seqlens, message):
    with pytest.raises(AttentionInputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        context_parallel_attention(*_qkv(), torch.tensor(cu_seqlens))


def test_bad_tensors_are_rejected():
    q, k, v = _qkv()
    cases = [
        ((q, k[:, :1].repeat(1, 3, 1), v[:, :1].repeat(1, 3, 1)), "Hq=4 must be a multiple of kv heads Hkv=3"),
        ((q, k, v[:, :1]), "same shape"),
        ((q[0], k, v), r"q must be \[tokens, heads, head_dim\]"),
        ((q.double(), k, v), "share one dtype"),
        ((q.int(), k, v), "floating-point"),
        ((q, k[:9], v[:9]), "agree on tokens"),
        ((q, k.to("meta"), v.to("meta")), "one device"),
    ]
    for args, message in cases:
        with pytest.raises(AttentionInputError, match=message):
            context_parallel_attention(*args, [0, 4, 10])


def test_bad_kind_scale_and_backend_are_rejected():
    q, k, v = _qkv()
    with pytest.raises(AttentionInputError, match="kind='zigzag' is unknown"):
        context_parallel_attention(q, k, v, [0, 10], kind="zigzag")
    with pytest.raises(AttentionInputError, match="softmax_scale"):
        context_parallel_attention(q, k, v, [0, 10], softmax_scale=-1.0)
    with pytest.raises(AttentionInputError, match="needs a process group"):
        context_parallel_attention(q, k, v, [0, 10], kind="ring")  # torch.distributed is not initialised here
    with pytest.raises(BackendUnavailableError, match="unknown"):
        context_parallel_attention(q, k, v, [0, 10], backend="cudnn")
    with pytest.raises(BackendUnavailableError, match="triton.*unavailable on cpu"):
        context_parallel_attention(q, k, v, [0, 10], backend="triton")


def bad_group_calls() -> list[str]:
    """On every rank of a world of 2: each bad call's error message (no rank may hang)."""
    rank = dist.get_rank()
    cu = [0, 3, 20]
    sharding = ZigzagSharding(cu, 2)
    q, k, v = (sharding.shard(t, rank) for t in _qkv(20))
    other = ZigzagSharding(cu, 3)  # sharded for a group of 3, run on a group of 2
    q3, k3, v3 = (other.shard(t, rank) for t in _qkv(20))
    calls = [
        lambda: context_parallel_attention(q3, k3, v3, cu, kind="ring"),
        lambda: context_parallel_attention(q, k, v, [0, 3, 21], kind="ulysses"),
        lambda: context_parallel_attention(q, k, v, cu, kind="hybrid", ulysses_degree=3),
        lambda: context_parallel_attention(q, k, v, cu, kind="ring", ulysses_degree=2),
        lambda: context_parallel_attention(q, k, v, cu, kind="local", group=dist.group.WORLD),
        # each rank passes a self-consistent shard, but of different boundaries
        lambda: context_parallel_attention(*(ZigzagSharding([0, 3 + rank, 20], 2).shard(t, rank) for t in _qkv(20)),
                                           [0, 3 + rank, 20], kind="ring"),
    ]
    messages = []
    for call in calls:
        try:
            call()
        except AttentionInputError as exc:
            messages.append(str(exc))
        else:
            messages.append("no error")
    return messages


def test_group_that_does_not_match_the_sharding_is_rejected_on_every_rank(gloo_pool):
    per_rank = gloo_pool(2).run(bad_group_calls)
    # [0, 3, 21] leaves rank 1's shard size unchanged: rank 1 learns of rank 0's error from the agreement
    expected = [["gives this rank"] * 2, ["gives this rank", "group ranks [0] rejected"],
                ["positive divisor of the group size 2"] * 2, ["contradicts kind='ring'"] * 2,
                ["needs a group of one rank"] * 2, ["cu_seqlens differs between the ranks"] * 2]
    for call, want in enumerate(expected):
        for rank in range(2):
            got = per_rank[rank][call]
            assert want[rank] in got, f"call {call}, rank {rank}: expected {want[rank]!r} in {got!r}"
