"""Attention over sub-groups whose global ranks are non-contiguous and not in ascending order.

The world of 4 runs two groups at once, (2, 0) and (3, 1) (group rank 0 is
global rank 2, ...), then one group of 3, (3, 1, 2), while rank 0 idles, then
two overlapping groups one after the other. Every group's results, put back
at their global token indices, match the dense float64 reference
(`tests.reference`) within the parity tolerance. The slow test does the same
on a world of 8 for world size 8 and for rings of 5, 6 and 7 ranks, fp32 and bf16.
"""
from __future__ import annotations

import pytest
import torch.distributed as dist

from tests.reference.cp_attention_check import AttentionCase, relative_errors, run_distributed
from tests.attention.test_parity import FP32_REL_TOL, assert_bf16_error_bounded_and_flat, bf16_case

GQA_UNEVEN = dict(lengths=(1, 7, 300, 33), num_q_heads=8, num_kv_heads=2)


def run_on_groups(groups: list[tuple[int, ...]], cases: list[AttentionCase]) -> list[list | None]:
    """On every world rank: for each group it belongs to, its results for every case (else None).

    Every rank creates every group, in order (as `new_group` requires); group rank i is ranks[i].
    """
    me = dist.get_rank()
    created = [dist.new_group(list(ranks), sort_ranks=False) for ranks in groups]
    out = []
    for ranks, group in zip(groups, created):
        if me not in ranks:
            out.append(None)
            continue
        if dist.get_rank(group) != ranks.index(me):
            raise AssertionError(f"group {ranks}: global rank {me} has group rank {dist.get_rank(group)}")
        out.append([run_distributed(case, group) for case in cases])
    return out


def _group_errors(pool, groups, cases, norm="max") -> dict[tuple, list[dict[str, float]]]:
    results = pool.run(run_on_groups, groups, cases)
    return {
        ranks: [
            relative_errors(case, [results[r][g][i] for r in ranks], norm=norm) for i, case in enumerate(cases)
        ]
        for g, ranks in enumerate(groups)
    }


def _assert_within_tolerance(errors: dict[tuple, list[dict[str, float]]], cases: list[AttentionCase]) -> None:
    for ranks, per_case in errors.items():
        for case, got in zip(cases, per_case):
            bad = {k: v for k, v in got.items() if not v <= FP32_REL_TOL}
            assert not bad, f"group {ranks}, {case}: relative errors {bad} exceed {FP32_REL_TOL}"


def test_attention_on_non_contiguous_unsorted_groups_matches_reference(gloo_pool):
    cases = [AttentionCase(kind=kind, **GQA_UNEVEN) for kind in ("ring", "ulysses", "hybrid")]
    pool = gloo_pool(4)
    _assert_within_tolerance(_group_errors(pool, [(2, 0), (3, 1)], cases), cases)
    _assert_within_tolerance(_group_errors(pool, [(3, 1, 2)], cases), cases)
    _assert_within_tolerance(_group_errors(pool, [(3, 1, 0), (2, 0, 1, 3)], cases), cases)


@pytest.mark.slow
def test_world_of_8_and_rings_of_5_6_7_match_reference(gloo_pool):
    pool = gloo_pool(8)
    cases = [AttentionCase(kind=kind, **GQA_UNEVEN) for kind in ("ring", "ulysses", "hybrid")]
    cases += [AttentionCase(kind="hybrid", ulysses_degree=d, **GQA_UNEVEN) for d in (2, 4)]
    _assert_within_tolerance(_group_errors(pool, [tuple(range(8))], cases), cases)
    rings = [(7, 5, 3, 1, 0), (6, 2, 4, 0, 1, 3), (1, 2, 3, 4, 5, 6, 7)]
    _assert_within_tolerance(_group_errors(pool, rings, cases[:2]), cases[:2])
    bf16 = [bf16_case(0)]
    groups = [(0, 1), (0, 1, 2), (0, 1, 2, 3), *rings, tuple(range(8))]
    max_errors = _group_errors(pool, groups, bf16)
    rms_errors = _group_errors(pool, groups, bf16, norm="rms")
    assert_bf16_error_bounded_and_flat(
        {len(g): max_errors[g][0] for g in groups}, {len(g): rms_errors[g][0] for g in groups}
    )
