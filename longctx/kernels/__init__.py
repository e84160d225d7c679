"""Local attention kernels (Triton) and compiled ops (csrc) with pure-torch fallbacks.

- ``triton_attention``: the "triton" backend of ``longctx.attention.backends``
  (document-masked causal varlen attention with log-sum-exp, forward and backward).
- ``tile_ranges``: the per-tile key/query ranges the kernels visit (torch side).
- ``ops``: zigzag shard index (C++), lse merge and RoPE (CUDA), each with a torch fallback.
- ``extension``: finds, or JIT-builds into a cache, the compiled extensions of ``csrc/``.

Modules import triton and compiled code lazily; importing this package needs only torch.
"""
