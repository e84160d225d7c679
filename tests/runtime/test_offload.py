"""Activation offload: a declared no-op on CPU; on CUDA the same gradients with activations on the host."""
from __future__ import annotations

import contextlib

import pytest
import torch

from longctx.model import LOCAL, Decoder, ModelConfig
from longctx.runtime.offload import activation_offload, offload_active


def test_offload_is_a_declared_no_op_on_cpu():
    cpu = torch.device("cpu")
    assert offload_active(True, cpu) is False
    assert isinstance(activation_offload(True, cpu), contextlib.nullcontext)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_offloaded_forward_gives_the_same_gradients():
    device = torch.device("cuda")
    torch.manual_seed(0)
    model = Decoder(ModelConfig()).to(device)
    tokens = torch.randint(0, 257, (300,), device=device)
    positions = torch.cat([torch.arange(100), torch.arange(200)]).to(device)

    def gradients(offload: bool) -> list[torch.Tensor]:
        model.zero_grad(set_to_none=True)
        with activation_offload(offload, device):
            model(tokens, positions, [0, 100, 300], LOCAL).logsumexp(-1).sum().backward()
        return [p.grad.clone() for p in model.parameters()]

    plain = gradients(False)
    assert offload_active(True, device)
    for a, b in zip(plain, gradients(True)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
