"""Local attention kernels (Triton) and compiled ops (csrc) with pure-torch fallbacks."""
