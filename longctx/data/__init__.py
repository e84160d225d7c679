"""Data: tokenize documents into megatron-core IndexedDatasets and pack them into steps.

Flow: text / .jsonl --:func:`ingest` (parallel, ``longctx data ingest``)--> ``<prefix>.bin/.idx`` --:class:`DocumentDataset`-->
:class:`StepSampler` --> per step, a list of ``int32`` token arrays (one per document piece).
:func:`default_corpus` gives a ready dataset built from the Python standard library.
"""
from longctx.data.corpus import default_corpus, stdlib_source_files
from longctx.data.dataset import DocumentDataset
from longctx.data.ingest import ingest
from longctx.data.sampler import Piece, StepSampler
from longctx.data.tokenizers import ByteTokenizer, HuggingFaceTokenizer, Tokenizer, load_tokenizer

__all__ = [
    "ByteTokenizer",
    "DocumentDataset",
    "HuggingFaceTokenizer",
    "Piece",
    "StepSampler",
    "Tokenizer",
    "default_corpus",
    "ingest",
    "load_tokenizer",
    "stdlib_source_files",
]
