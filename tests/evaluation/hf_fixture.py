"""A tiny random Hugging Face Llama with its own tokenizer in one directory, and a dataset tokenized with it."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from longctx.data import ingest, load_tokenizer
from tests.data.hf_tokenizers import write_hf_tokenizer

#: RoPE base of the "pretrained" model (the recipe raises it)
BASE_THETA = 10000.0


def tiny_hf_llama(directory: Path, seed: int = 0) -> Path:
    """``config.json`` + safetensors of a random fp32 Llama (GQA 4:2) and a ~300-token BPE with BOS and EOS."""
    tokenizer_dir = write_hf_tokenizer(directory.with_name(directory.name + "-tokenizer"),
                                       config={"bos_token": "<s>", "eos_token": "</s>"})
    vocab = load_tokenizer(str(tokenizer_dir)).vocab_size
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5,
                         rope_parameters={"rope_type": "default", "rope_theta": BASE_THETA},
                         max_position_embeddings=256, tie_word_embeddings=False)
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(directory)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tokenizer_dir / name, directory / name)
    return directory


def ingested_documents(directory: Path, tokenizer_dir: Path, count: int = 40, seed: int = 0) -> str:
    """``count`` documents of 5..900 words (a long tail) ingested with the model's tokenizer; returns the prefix."""
    rng = np.random.default_rng(seed)
    words = ["def", "train", "(model,", "data):", "return", "model(data)", "héllo", "wörld", "世界", "\n", "    "]
    lengths = np.minimum(rng.lognormal(4.0, 1.0, size=count).astype(int) + 5, 900)
    lines = [json.dumps({"text": " ".join(rng.choice(words, size=int(n)))}) for n in lengths]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "docs.jsonl").write_text("\n".join(lines) + "\n")
    return ingest([str(directory / "docs.jsonl")], str(directory / "docs"), load_tokenizer(str(tokenizer_dir)))
