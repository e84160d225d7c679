"""Data mixtures: several ingested datasets as one document space, sources with weights and length windows.

A mixture (as in ProLong's long/short recipe) is a list of sources; each
names a dataset prefix, a weight (its share of the training TOKENS), and a
document length window ``[min_length, max_length]`` (tokens, including the
BOS/EOS ingest adds). Two sources may use the same dataset with different
windows: "long" = the documents of >= 4K tokens, "short" = the rest.

Documents are numbered globally: the distinct datasets, in order of first
appearance, are concatenated (:class:`ConcatenatedDataset`), so a
:class:`longctx.data.Piece` stays ``(document, start, stop)`` and any rank can
read it from the memory-mapped files.

Held-out documents: a fixed fraction of every dataset, chosen by
:func:`heldout_documents` from the dataset's size alone (not the training
seed), so evaluation always sees the same documents and training never draws
them, whichever sources use the dataset.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from longctx.data.dataset import DocumentDataset

#: seed of the held-out split; fixed so that every run of a dataset holds out the same documents
HELDOUT_SEED = 0x5EED


@dataclass(frozen=True)
class SourceSpec:
    """One source of a mixture: which documents of which dataset, and how much of the training tokens."""

    #: dataset prefix (``<prefix>.bin/.idx``)
    prefix: str
    #: share of the training tokens (any positive scale; normalised over the sources)
    weight: float = 1.0
    #: documents shorter than this many tokens are not drawn
    min_length: int = 1
    #: documents longer than this many tokens are not drawn; None: no limit
    max_length: int | None = None
    #: label in errors and metrics; default: the prefix's last component
    name: str | None = None

    def __post_init__(self) -> None:
        label = self.label
        if isinstance(self.weight, bool) or not isinstance(self.weight, (int, float)) or not (
                math.isfinite(self.weight) and self.weight > 0):
            raise ValueError(f"source {label!r}: weight={self.weight!r} must be a finite number > 0")
        if isinstance(self.min_length, bool) or not isinstance(self.min_length, int) or self.min_length < 1:
            raise ValueError(f"source {label!r}: min_length={self.min_length!r} must be an integer >= 1 (tokens)")
        if self.max_length is not None and (isinstance(self.max_length, bool) or not isinstance(self.max_length, int)
                                            or self.max_length < self.min_length):
            raise ValueError(f"source {label!r}: max_length={self.max_length!r} must be an integer >= "
                             f"min_length={self.min_length}, or None for no limit")

    @property
    def label(self) -> str:
        return self.name or self.prefix.rstrip("/").split("/")[-1]


@dataclass(frozen=True)
class MixtureSource:
    """A source resolved to global document ids: what the sampler draws from."""

    name: str
    #: global ids of the documents it may draw (held-out ones and those outside the window removed), sorted
    documents: np.ndarray
    #: normalised weight (the sources' weights sum to 1)
    weight: float


class ConcatenatedDataset:
    """Several :class:`DocumentDataset` as one: global document ``i`` is local document ``i - offset`` of its part."""

    def __init__(self, datasets: list[DocumentDataset]) -> None:
        if not datasets:
            raise ValueError("ConcatenatedDataset: no datasets; give at least one")
        self.parts = list(datasets)
        self.offsets = np.concatenate([[0], np.cumsum([len(d) for d in datasets])]).astype(np.int64)
        self._lengths = np.concatenate([d.lengths for d in datasets]).astype(np.int64)
        self._lengths.setflags(write=False)
        self.prefix = "+".join(d.prefix for d in datasets)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per document, ``int64 [documents]``."""
        return self._lengths

    def tokens(self, index: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Tokens ``[start, stop)`` of global document ``index`` as a fresh ``int32`` array."""
        if not 0 <= index < len(self):
            raise IndexError(f"ConcatenatedDataset: index={index} outside [0, {len(self)}) for {self.prefix!r}")
        part = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return self.parts[part].tokens(int(index - self.offsets[part]), start, stop)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.tokens(index)


def heldout_documents(num_documents: int, fraction: float) -> np.ndarray:
    """Sorted local ids of the held-out documents of a dataset of ``num_documents``: ``ceil(fraction * n)`` of them.

    Depends only on ``num_documents`` and ``fraction`` (a permutation seeded by
    :data:`HELDOUT_SEED` and the size), so training and evaluation agree.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
        raise ValueError(f"heldout fraction={fraction!r} must lie in [0, 1)")
    count = math.ceil(fraction * num_documents)
    order = np.random.default_rng([HELDOUT_SEED, num_documents]).permutation(num_documents)
    return np.sort(order[:count]).astype(np.int64)


def open_mixture(specs: list[SourceSpec], heldout_fraction: float = 0.0) -> tuple[ConcatenatedDataset, list[MixtureSource]]:
    """Open the datasets of ``specs`` (each prefix once) and resolve every source to its training documents."""
    if not specs:
        raise ValueError("open_mixture: no sources; give at least one SourceSpec")
    prefixes = list(dict.fromkeys(spec.prefix for spec in specs))
    dataset = ConcatenatedDataset([DocumentDataset(prefix) for prefix in prefixes])
    training = np.ones(len(dataset), dtype=bool)
    for part, offset in zip(dataset.parts, dataset.offsets[:-1]):
        training[offset + heldout_documents(len(part), heldout_fraction)] = False
    total_weight = float(sum(spec.weight for spec in specs))
    sources = []
    for spec in specs:
        part = prefixes.index(spec.prefix)
        ids = np.arange(dataset.offsets[part], dataset.offsets[part + 1], dtype=np.int64)
        lengths = dataset.lengths[ids]
        keep = training[ids] & (lengths >= spec.min_length)
        if spec.max_length is not None:
            keep &= lengths <= spec.max_length
        if not keep.any():
            raise ValueError(
                f"source {spec.label!r}: none of the {len(ids)} documents of {spec.prefix!r} lies in "
                f"[min_length={spec.min_length}, max_length={spec.max_length}] outside the held-out "
                f"{heldout_fraction:.0%} (lengths {int(lengths.min())}..{int(lengths.max())}); widen the window"
            )
        sources.append(MixtureSource(spec.label, ids[keep], spec.weight / total_weight))
    return dataset, sources


def mixture_fingerprint(sources: list[MixtureSource]) -> str:
    """A short hash of the sources' documents and weights: a resumed run must draw from the same mixture."""
    digest = hashlib.sha256()
    for source in sources:
        digest.update(source.name.encode() + b"\0" + repr(round(source.weight, 12)).encode() + b"\0")
        digest.update(np.ascontiguousarray(source.documents, dtype=np.int64).tobytes())
    return digest.hexdigest()[:16]
