"""Model unit tests: per-document RoPE, GQA, validation, FLOPs, step-normalised loss."""
from __future__ import annotations

import math
import re

import pytest
import torch
from torch.nn import functional as F

from longctx.model import (
    LOCAL, Decoder, ModelConfig, ModelConfigError, count_targets, next_token_targets, preset_names, step_flops, step_loss,
)
from longctx.model.decoder import Attention
from longctx.model.rope import apply_rope, rope_tables


def _model(**overrides) -> Decoder:
    torch.manual_seed(0)
    return Decoder(ModelConfig(**overrides))


def _positions(lengths: list[int]) -> torch.Tensor:
    return torch.cat([torch.arange(n) for n in lengths])


def _cu(lengths: list[int]) -> list[int]:
    return [0, *torch.cumsum(torch.tensor(lengths), 0).tolist()]


def test_a_document_gives_the_same_logits_alone_or_packed_after_others():
    model = _model()
    torch.manual_seed(1)
    first, second = torch.randint(0, 257, (23,)), torch.randint(0, 257, (17,))
    alone = model(second, torch.arange(17), [0, 17])
    packed = model(torch.cat([first, second]), _positions([23, 17]), [0, 23, 40])
    torch.testing.assert_close(packed[23:], alone, rtol=1e-5, atol=1e-6)


def test_positions_restart_per_document_change_the_logits_when_wrong():
    model = _model()
    tokens = torch.randint(0, 257, (40,), generator=torch.Generator().manual_seed(2))
    right = model(tokens, _positions([23, 17]), [0, 23, 40])
    shifted = model(tokens, torch.arange(40), [0, 23, 40])  # positions that ignore the document start
    assert not torch.allclose(right[23:], shifted[23:]), "RoPE did not depend on the per-document positions"
    torch.testing.assert_close(right[:23], shifted[:23])


def test_rope_scores_depend_only_on_the_position_difference():
    torch.manual_seed(3)
    q, k = torch.randn(1, 2, 16, dtype=torch.float64), torch.randn(1, 2, 16, dtype=torch.float64)

    def score(pq: int, pk: int) -> torch.Tensor:
        cq, sq = rope_tables(torch.tensor([pq]), 16, 10000.0)
        ck, sk = rope_tables(torch.tensor([pk]), 16, 10000.0)
        return (apply_rope(q, cq.double(), sq.double()) * apply_rope(k, ck.double(), sk.double())).sum(-1)

    torch.testing.assert_close(score(7, 3), score(1004, 1000), rtol=1e-6, atol=1e-6)
    assert rope_tables(torch.tensor([5]), 16, 10000.0)[0].dtype == torch.float32


def test_gqa_attention_equals_attention_with_repeated_kv_heads():
    config = ModelConfig(dim=64, n_heads=4, n_kv_heads=2)
    torch.manual_seed(4)
    attention = Attention(config)
    x = torch.randn(30, 64)
    lengths = [12, 18]
    cos, sin = rope_tables(_positions(lengths), config.head_dim, config.rope_theta)
    out, _ = attention(x, cos, sin, _cu(lengths), LOCAL)

    q = apply_rope(attention.q(x).view(30, 4, 16), cos, sin)
    k = apply_rope(attention.k(x).view(30, 2, 16), cos, sin).repeat_interleave(2, dim=1)
    v = attention.v(x).view(30, 2, 16).repeat_interleave(2, dim=1)
    expected = []
    for start, n in zip(_cu(lengths)[:-1], lengths):
        sl = slice(start, start + n)
        expected.append(F.scaled_dot_product_attention(q[sl].transpose(0, 1), k[sl].transpose(0, 1),
                                                       v[sl].transpose(0, 1), is_causal=True).transpose(0, 1))
    torch.testing.assert_close(out, attention.o(torch.cat(expected).reshape(30, 64)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fields, message", [
    ({"n_heads": 3}, "model.dim=64 is not divisible by model.n_heads=3"),
    ({"n_kv_heads": 3}, "model.n_heads=4 is not a multiple of model.n_kv_heads=3"),
    ({"dim": 12, "n_heads": 4, "n_kv_heads": 2}, "head_dim = dim / n_heads = 12/4 = 3 is odd"),
    ({"n_layers": 0}, "model.n_layers=0 must be a positive integer"),
])
def test_model_config_rejects_shapes_that_cannot_work(fields, message):
    with pytest.raises(ModelConfigError, match=re.escape(message)):
        ModelConfig(**fields)


def test_presets_load_from_the_hydra_group_and_count_parameters():
    assert {"tiny", "small", "llama3-8b", "llama3-70b"} <= set(preset_names())
    assert 7.9e9 < ModelConfig.preset("llama3-8b").num_parameters() < 8.1e9
    assert 70.0e9 < ModelConfig.preset("llama3-70b").num_parameters() < 71.0e9
    tiny = ModelConfig.preset("tiny")
    assert sum(p.numel() for p in Decoder(tiny).parameters()) == tiny.num_parameters()
    with pytest.raises(ModelConfigError, match="model preset 'huge' is unknown"):
        ModelConfig.preset("huge")


def test_step_flops_count_attention_as_sum_of_squares_per_document():
    config = ModelConfig.preset("llama3-8b")
    one_long, two_halves = step_flops(config, [8192]), step_flops(config, [4096, 4096])
    attention_long = 6 * config.n_layers * config.dim * 8192 ** 2
    assert math.isclose(one_long - two_halves, attention_long / 2)
    assert math.isclose(two_halves - attention_long / 2, 6 * config.matmul_parameters() * 8192)


def test_loss_shares_of_a_split_step_sum_to_the_whole_step_loss():
    torch.manual_seed(5)
    sequences = [torch.randint(0, 257, (n,)) for n in (9, 1, 14)]
    targets = next_token_targets(sequences)
    assert count_targets([9, 1, 14]) == int((targets != -100).sum()) == 8 + 0 + 13
    logits = torch.randn(24, 257, dtype=torch.float64)
    whole = step_loss(logits, targets, 21)
    shares = step_loss(logits[:10], targets[:10], 21) + step_loss(logits[10:], targets[10:], 21)
    torch.testing.assert_close(shares, whole)
    torch.testing.assert_close(whole, F.cross_entropy(logits, targets, ignore_index=-100))
