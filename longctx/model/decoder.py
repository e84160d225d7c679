"""Llama-style decoder over a packed, possibly context-parallel shard of documents.

Input is one rank's shard of a packed batch: token ids `[n]`, each token's
position inside its own document `[n]`, and the GLOBAL document boundaries
`cu_seqlens` of the packed batch (identical on every rank of the group). The
only place ranks talk to each other is attention, which goes through
`longctx.attention` with the group's kind; every other layer is token-wise, so
a shard's logits equal the matching rows of the single-process logits.

The attention plan (input checks, which include one tiny all_gather on a group
of more than one rank, the sharding and the exchange layout) depends only on
the batch, the group and the head shapes, so it is built by the first layer
and reused by every other layer of the same forward.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from longctx.attention import HybridPlan, run_planned
from longctx.model.activation_checkpoint import checkpointed_block
from longctx.model.attention_layout import LOCAL, AttentionLayout, attention_plan
from longctx.model.activation_memory import EMBEDDING, HEAD, LOSS, PLAIN, ActivationMemory
from longctx.model.config import ModelConfig
from longctx.model.layers import RMSNorm, SwiGLU, at_least_fp32
from longctx.model.loss import step_loss
from longctx.model.rope import apply_rope, rope_tables
from longctx.model.tiled_block import tiled_checkpointed_block
from longctx.model.tiled_loss import tiled_head_loss
from longctx.model.tiled_mlp import tiled_swiglu


class Attention(nn.Module):
    """GQA self-attention with RoPE: `[n, dim]` -> `[n, dim]`; K/V keep `n_kv_heads` heads."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.q = nn.Linear(config.dim, config.dim, bias=config.qkv_bias)
        self.k = nn.Linear(config.dim, config.kv_dim, bias=config.qkv_bias)
        self.v = nn.Linear(config.dim, config.kv_dim, bias=config.qkv_bias)
        self.o = nn.Linear(config.dim, config.dim, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                cu_seqlens: torch.Tensor | Sequence[int], layout: AttentionLayout,
                plan: HybridPlan | None = None, core=run_planned) -> tuple[torch.Tensor, HybridPlan]:
        """Returns the output `[n, dim]` and the attention plan (built here when `plan` is None).

        `core(q, k, v, plan)` computes the attention output (`run_planned`; layer checkpoints swap in one
        that keeps or replays it, see `longctx.model.activation_checkpoint`).
        """
        q, k, v = self.projections(x, cos, sin)
        plan = plan or attention_plan(q, k, v, cu_seqlens, layout)
        with torch.autocast(q.device.type, enabled=False):  # bf16 q/k/v in, fp32 statistics inside (runtime.precision)
            out = core(q, k, v, plan)
        return self.o(out.reshape(x.shape[0], self.config.dim)), plan

    def projections(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Rotated q `[n, n_heads, head_dim]`, rotated k and v `[n, n_kv_heads, head_dim]` of `x` `[n, dim]`."""
        n, c = x.shape[0], self.config
        q = apply_rope(self.q(x).view(n, c.n_heads, c.head_dim), cos, sin)
        k = apply_rope(self.k(x).view(n, c.n_kv_heads, c.head_dim), cos, sin)
        return q, k, self.v(x).view(n, c.n_kv_heads, c.head_dim)


class Block(nn.Module):
    """Pre-norm decoder block: ``x + attn(norm(x))`` then ``x + mlp(norm(x))``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(config.dim, config.norm_eps)
        self.attention = Attention(config)
        self.mlp_norm = RMSNorm(config.dim, config.norm_eps)
        self.mlp = SwiGLU(config.dim, config.ffn_dim)

    def forward(self, x, cos, sin, cu_seqlens, layout: AttentionLayout, plan: HybridPlan | None = None,
                core=run_planned, mlp_tile_tokens: int | None = None) -> tuple[torch.Tensor, HybridPlan]:
        """Returns the block's output `[n, dim]` and the attention plan (see `Attention.forward`).

        `mlp_tile_tokens`: run the MLP over token tiles (`longctx.model.tiled_mlp`); None: all at once.
        """
        attended, plan = self.attention(self.attention_norm(x), cos, sin, cu_seqlens, layout, plan, core)
        x = x + attended
        normed = self.mlp_norm(x)
        mlp = self.mlp(normed) if mlp_tile_tokens is None else tiled_swiglu(self.mlp, normed, mlp_tile_tokens)
        return x + mlp, plan

    def attention_inputs(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The token-wise part before attention: rotated q, k, v (`Attention.projections`) of `x` `[n, dim]`."""
        return self.attention.projections(self.attention_norm(x), cos, sin)

    def after_attention(self, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        """The token-wise part after attention: the block's output `[n, dim]` from its input `x` `[n, dim]` and
        the attention output `attended` `[n, n_heads, head_dim]`."""
        x = x + self.attention.o(attended.reshape(x.shape[0], self.attention.config.dim))
        return x + self.mlp(self.mlp_norm(x))


def run_block(block: Block, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
              cu_seqlens: torch.Tensor | Sequence[int], layout: AttentionLayout, plan: HybridPlan | None,
              memory: ActivationMemory) -> tuple[torch.Tensor, HybridPlan]:
    """One block on `x` `[n, dim]` with `memory`'s checkpointing and tiles; returns (output, attention plan).

    The tiled checkpoint writes its input gradient over its output's: a block's output is only read by
    the next block or the head (see `tiled_checkpointed_block`)."""
    if memory.checkpointing == "none":
        return block(x, cos, sin, cu_seqlens, layout, plan, mlp_tile_tokens=memory.mlp_tile_tokens)
    if memory.checkpointing == "tiled":
        return tiled_checkpointed_block(block, x, cos, sin, cu_seqlens, layout, plan,
                                        tile_tokens=memory.mlp_tile_tokens, weights=memory.weights,
                                        gradient_in_place=True)
    return checkpointed_block(block, x, cos, sin, cu_seqlens, layout, plan,
                              selective=memory.checkpointing == "selective",
                              mlp_tile_tokens=memory.mlp_tile_tokens, weights=memory.weights)


class Decoder(nn.Module):
    """Embedding, `n_layers` blocks, final RMSNorm, output head (sharing the embedding's matrix when tied)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.dim)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.head = nn.Linear(config.dim, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.head.weight = self.embedding.weight
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Normal(0, init_std) for every matrix and the embedding; biases start at zero, norms at one.

        Seed torch's generator identically on every rank before building the model
        and every rank holds the same initial weights.
        """
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=self.config.init_std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor, cu_seqlens: torch.Tensor | Sequence[int],
                layout: AttentionLayout = LOCAL, memory: ActivationMemory = PLAIN) -> torch.Tensor:
        """Logits `[n, vocab]` (at least fp32) for this rank's tokens `[n]` at document positions `[n]`."""
        hidden = self.hidden(tokens, positions, cu_seqlens, layout, memory)
        with memory.scope(HEAD):
            return self._logits(hidden)

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return at_least_fp32(self.head(self.norm(hidden)))

    def hidden(self, tokens: torch.Tensor, positions: torch.Tensor, cu_seqlens: torch.Tensor | Sequence[int],
               layout: AttentionLayout = LOCAL, memory: ActivationMemory = PLAIN) -> torch.Tensor:
        """The last block's output `[n, dim]` (before the final norm), with `memory`'s checkpoints and tiles."""
        cos, sin = rope_tables(positions, self.config.head_dim, self.config.rope_theta, self.config.rope_scaling)
        with memory.scope(EMBEDDING), memory.weights(self.embedding):
            x = self.embedding(tokens)
        plan = None
        for index, block in enumerate(self.blocks):
            with memory.scope(index):
                x, plan = run_block(block, x, cos, sin, cu_seqlens, layout, plan, memory)
        return x

    def loss(self, tokens: torch.Tensor, positions: torch.Tensor, cu_seqlens: torch.Tensor | Sequence[int],
             targets: torch.Tensor, step_targets: int, layout: AttentionLayout = LOCAL,
             memory: ActivationMemory = PLAIN) -> torch.Tensor:
        """This shard's ``sum CE / step_targets`` (`longctx.model.loss.step_loss`) for targets `[n]`.

        With `memory.loss_tile_tokens` the head and cross-entropy run over token tiles
        (`longctx.model.tiled_loss`) and the `[n, vocab]` logits never exist at once.
        """
        hidden = self.hidden(tokens, positions, cu_seqlens, layout, memory)
        with memory.scope(HEAD):
            if memory.loss_tile_tokens is not None:
                return tiled_head_loss(hidden, self.norm, self.head, targets, step_targets, memory.loss_tile_tokens,
                                       memory.weights)
            logits = self._logits(hidden)
        with memory.scope(LOSS):
            return step_loss(logits, targets, step_targets)
