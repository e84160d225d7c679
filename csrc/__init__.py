"""C++/CUDA sources of longctx's compiled ops (installed as ``longctx.csrc`` so the JIT loader finds them)."""
