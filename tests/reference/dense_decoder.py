"""A plain dense float64 Llama decoder and AdamW training loop: the runtime tests' independent reference.

Written from the textbook definitions, sharing no code with `longctx.model`
or `longctx.runtime`: every document runs alone through a functional decoder
(RMSNorm, RoPE with the half-split channel pairing at positions 0..L-1, GQA
causal softmax attention, SwiGLU), the loss of a step is the sum of the
next-token cross-entropies of all its documents divided by the step's number
of targets (L - 1 per document), and training is global-norm clipping plus
AdamW (decoupled weight decay on matrices only) under linear warmup and
cosine decay. Only the weights' names follow `longctx.model.Decoder`'s
state_dict, so the reference can start from the same initial weights.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DenseShape:
    """The decoder's shape: widths in channels, `rope_theta` the RoPE base, `norm_eps` inside the RMS."""

    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    rope_theta: float
    norm_eps: float

    @classmethod
    def of(cls, config) -> "DenseShape":
        """From a `longctx.model.ModelConfig`-like object (plain attribute reads)."""
        return cls(config.n_layers, config.n_heads, config.n_kv_heads, config.dim // config.n_heads,
                   float(config.rope_theta), float(config.norm_eps))


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def _rotate(x: torch.Tensor, theta: float) -> torch.Tensor:
    """RoPE on `x` `[L, heads, D]` at positions 0..L-1: channel i pairs with channel i + D/2."""
    length, _, dim = x.shape
    frequencies = theta ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    angle = torch.arange(length, dtype=torch.float64)[:, None, None] * frequencies
    x1, x2 = x[..., : dim // 2], x[..., dim // 2:]
    return torch.cat([x1 * angle.cos() - x2 * angle.sin(), x1 * angle.sin() + x2 * angle.cos()], -1)


def _attention(x: torch.Tensor, w: dict[str, torch.Tensor], prefix: str, shape: DenseShape) -> torch.Tensor:
    length = x.shape[0]
    q = (x @ w[f"{prefix}.q.weight"].T).view(length, shape.n_heads, shape.head_dim)
    k = (x @ w[f"{prefix}.k.weight"].T).view(length, shape.n_kv_heads, shape.head_dim)
    v = (x @ w[f"{prefix}.v.weight"].T).view(length, shape.n_kv_heads, shape.head_dim)
    q, k = _rotate(q, shape.rope_theta), _rotate(k, shape.rope_theta)
    group = shape.n_heads // shape.n_kv_heads
    k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
    scores = torch.einsum("ihd,jhd->hij", q, k) / math.sqrt(shape.head_dim)
    future = torch.ones(length, length, dtype=torch.bool).triu(1)
    probs = scores.masked_fill(future, float("-inf")).softmax(-1)
    out = torch.einsum("hij,jhd->ihd", probs, v).reshape(length, -1)
    return out @ w[f"{prefix}.o.weight"].T


def document_logits(w: dict[str, torch.Tensor], shape: DenseShape, tokens: torch.Tensor) -> torch.Tensor:
    """Logits `[L, vocab]` (float64 weights in, float64 out) of one document's tokens `[L]`."""
    x = w["embedding.weight"][tokens.long()]
    for i in range(shape.n_layers):
        b = f"blocks.{i}"
        x = x + _attention(_rms_norm(x, w[f"{b}.attention_norm.weight"], shape.norm_eps), w, f"{b}.attention", shape)
        h = _rms_norm(x, w[f"{b}.mlp_norm.weight"], shape.norm_eps)
        gate, up = h @ w[f"{b}.mlp.gate.weight"].T, h @ w[f"{b}.mlp.up.weight"].T
        x = x + (torch.nn.functional.silu(gate) * up) @ w[f"{b}.mlp.down.weight"].T
    return _rms_norm(x, w["norm.weight"], shape.norm_eps) @ w["head.weight"].T


def step_loss(w: dict[str, torch.Tensor], shape: DenseShape, documents: list[torch.Tensor]) -> torch.Tensor:
    """Sum of every document's next-token cross-entropies / the step's number of targets (float64 scalar)."""
    targets = sum(max(len(d) - 1, 0) for d in documents)
    total = sum(
        torch.nn.functional.cross_entropy(document_logits(w, shape, d)[:-1], d[1:].long(), reduction="sum")
        for d in documents if len(d) > 1
    )
    return total / targets


def float64_weights(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Leaf float64 copies of `state_dict`'s tensors that require grad."""
    return {name: t.detach().double().clone().requires_grad_() for name, t in state_dict.items()}


@dataclass(frozen=True)
class DenseOptim:
    """AdamW + schedule settings: peak `lr`, linear warmup over `warmup_steps`, cosine to `min_lr_ratio`."""

    lr: float
    min_lr_ratio: float
    warmup_steps: int
    weight_decay: float
    beta1: float
    beta2: float
    eps: float
    grad_clip: float

    @classmethod
    def of(cls, config) -> "DenseOptim":
        return cls(config.lr, config.min_lr_ratio, config.warmup_steps, config.weight_decay, config.beta1,
                   config.beta2, config.eps, config.grad_clip)

    def lr_at(self, step: int, total_steps: int) -> float:
        """Learning rate of optimizer step `step` (0-based) in a run of `total_steps`."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        progress = min((step - self.warmup_steps) / max(total_steps - self.warmup_steps - 1, 1), 1.0)
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * (1 + math.cos(math.pi * progress)) / 2)


def train_losses(w: dict[str, torch.Tensor], shape: DenseShape, optim: DenseOptim,
                 steps: list[list[torch.Tensor]], total_steps: int) -> list[float]:
    """Train `w` in place on `steps` (each a list of documents); return every step's loss before its update."""
    moments = {name: (torch.zeros_like(p), torch.zeros_like(p)) for name, p in w.items()}
    losses = []
    for t, documents in enumerate(steps):
        loss = step_loss(w, shape, documents)
        grads = torch.autograd.grad(loss, list(w.values()))
        losses.append(float(loss))
        norm = math.sqrt(sum(float(g.pow(2).sum()) for g in grads))
        scale = min(1.0, optim.grad_clip / (norm + 1e-6)) if optim.grad_clip > 0 else 1.0
        lr = optim.lr_at(t, total_steps)
        with torch.no_grad():
            for (name, p), g in zip(w.items(), grads):
                g = g * scale
                m, v = moments[name]
                m.mul_(optim.beta1).add_(g, alpha=1 - optim.beta1)
                v.mul_(optim.beta2).addcmul_(g, g, value=1 - optim.beta2)
                if p.ndim >= 2:
                    p.mul_(1 - lr * optim.weight_decay)
                m_hat, v_hat = m / (1 - optim.beta1 ** (t + 1)), v / (1 - optim.beta2 ** (t + 1))
                p.sub_(lr * m_hat / (v_hat.sqrt() + optim.eps))
    return losses
