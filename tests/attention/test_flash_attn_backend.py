"""The "flash_attn" backend equals the reference backend (needs CUDA and flash-attn; skipped otherwise)."""
from __future__ import annotations

import pytest
import torch

from longctx.attention import flash_attn_backend
from longctx.attention.backends import BackendUnavailableError, get_backend

from tests.attention.test_sdpa_backend import check_half_precision_matches_reference


def test_flash_attn_unavailable_on_cpu_says_why():
    with pytest.raises(BackendUnavailableError, match="flash_attn.*CUDA"):
        get_backend("flash_attn", torch.device("cpu"))


@pytest.mark.gpu
@pytest.mark.skipif(not flash_attn_backend.is_available(), reason="needs CUDA and flash-attn")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_flash_attn_matches_reference_forward_lse_and_backward(dtype):
    check_half_precision_matches_reference(flash_attn_backend, dtype)
