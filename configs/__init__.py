"""longctx.configs: the Hydra config tree (`pkg://longctx.configs`).

Importing it (Hydra does, to locate the tree) registers the structured schema
`longctx_schema` (`longctx.runtime.config.RunConfig`) that `config.yaml`
lists first, so every composition of this tree is type-checked.
"""
from longctx.runtime.config import register_schema

register_schema()
