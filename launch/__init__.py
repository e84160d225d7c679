"""longctx.launch: SLURM and local job launch."""
