"""The transformers side of the Hugging Face parity tests: random tiny models, per-document logits, errors.

transformers is the reference and shares no code with longctx's loader: it
builds and saves the models, and runs each document alone, unpacked.
"""
from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

VOCAB = 263  # above the byte tokenizer's 257, divisible by nothing useful
HEADS = 4
HEAD_DIM = 16
#: pretraining context of the scaled RoPE cases: the documents below run past it
ORIGINAL_CONTEXT = 32
#: document lengths of a packed batch: long ones past ORIGINAL_CONTEXT, a one-token one, a short one
DOCUMENTS = (37, 1, 90, 12)

#: rope_parameters of each case (transformers 5 format); "rope_theta" is added by `hf_model`
ROPE = {
    "none": {"rope_type": "default"},
    "linear": {"rope_type": "linear", "factor": 2.0},
    "llama3": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": ORIGINAL_CONTEXT},
    "yarn": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": ORIGINAL_CONTEXT},
    "yarn-mscale": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": ORIGINAL_CONTEXT,
                    "mscale": 2.0, "mscale_all_dim": 1.0, "beta_fast": 16.0, "beta_slow": 2.0},
    "yarn-untruncated": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": ORIGINAL_CONTEXT,
                         "attention_factor": 1.3, "truncate": False},
}


def hf_model(rope: str, kv_heads: int, tied: bool, qkv_bias: bool = False, seed: int = 0, theta: float = 500.0):
    """A random fp32 LlamaForCausalLM (Qwen2ForCausalLM with q/k/v biases), every weight and norm randomised.

    Weights ~ N(0, 0.15) and norm weights ~ 1 + N(0, 0.3), so attention is
    sharp, RoPE matters and a swapped norm or projection shows in the logits.
    """
    torch.manual_seed(seed)
    config_class, model_class = (Qwen2Config, Qwen2ForCausalLM) if qkv_bias else (LlamaConfig, LlamaForCausalLM)
    config = config_class(
        vocab_size=VOCAB, hidden_size=HEADS * HEAD_DIM, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=HEADS, num_key_value_heads=kv_heads, rms_norm_eps=1e-5,
        rope_parameters={**ROPE[rope], "rope_theta": theta}, tie_word_embeddings=tied,
        max_position_embeddings=4 * ORIGINAL_CONTEXT,
    )
    model = model_class(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("norm.weight"):
                parameter.copy_(1 + 0.3 * torch.randn_like(parameter))
            else:
                parameter.normal_(0.0, 0.15)
    return model


def documents(seed: int = 1) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(0, VOCAB, (n,), generator=generator) for n in DOCUMENTS]


def packed(docs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """(tokens, per-document positions, cu_seqlens) of the documents packed back to back."""
    lengths = [d.numel() for d in docs]
    cu = [0]
    for n in lengths:
        cu.append(cu[-1] + n)
    return torch.cat(docs), torch.cat([torch.arange(n) for n in lengths]), cu


@torch.no_grad()
def reference_logits(model, docs: list[torch.Tensor]) -> torch.Tensor:
    """transformers' logits `[sum n, vocab]`, each document run alone from position 0."""
    return torch.cat([model(input_ids=doc[None]).logits[0] for doc in docs])


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """``max |got - want| / max |want|``."""
    return ((got.double() - want.double()).abs().max() / want.double().abs().max()).item()


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny matmuls on one thread: two threads on a loaded 2-core CI machine make them ~50x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
