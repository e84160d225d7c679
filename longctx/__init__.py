"""longctx: long-context LLM training with a dynamic data x context-parallel mesh.

Parts (data flows one way, top to bottom):

- ``longctx.data``       documents -> megatron-core IndexedDataset -> packed steps
- ``longctx.scheduler``  per-step LP balance planner (pure Python + PuLP, no torch)
- ``longctx.runtime``    executes a Plan: process groups, sharding, train loop
- ``longctx.attention``  exact context-parallel attention (ring, Ulysses, hybrid)
- ``longctx.tracking``   wandb (offline by default), jsonl, none
- ``longctx.launch``     SLURM / local launch
"""

__version__ = "0.1.0"
