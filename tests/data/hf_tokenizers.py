"""Small Hugging Face tokenizer directories built in the tests with the real `tokenizers` package (no download)."""
from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

TRAINING_TEXT = ["def train(model, data):\n    return model(data)\n", "héllo wörld, 世界 🐍 text\n"] * 20


def write_hf_tokenizer(directory: Path, *, bos: str | None = "<s>", eos: str | None = "</s>",
                       post_processor_bos: bool = True, config: dict | None = None) -> Path:
    """A byte-level BPE of ~300 ids saved as ``tokenizer.json`` (+ ``tokenizer_config.json`` from ``config``).

    With ``post_processor_bos`` the tokenizer's own post-processor puts ``bos``
    before every sequence, as Llama's tokenizers do.
    """
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    specials = ["<unk>"] + [token for token in (bos, eos) if token]
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(TRAINING_TEXT, trainer)
    if bos and post_processor_bos:
        backend.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, backend.token_to_id(bos))])
    directory.mkdir(parents=True, exist_ok=True)
    backend.save(str(directory / "tokenizer.json"))
    if config is not None:
        (directory / "tokenizer_config.json").write_text(json.dumps(config))
    return directory
