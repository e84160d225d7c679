"""longctx.configs: the Hydra config tree (`pkg://longctx.configs`)."""
