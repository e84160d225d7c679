"""StepSampler: deterministic, resumable, document-aware packing of steps, from one dataset or a mixture.

Each source (one dataset, or each source of a :mod:`longctx.data.mixture`)
visits its documents once per epoch in an order drawn from
``numpy.random.default_rng([seed, source, epoch])``. A document longer than
``max_doc_tokens`` is cut into consecutive pieces of ``max_doc_tokens`` tokens
(the last one shorter). Pieces fill a step in order while they fit into
``tokens_per_step``; the first piece that does not fit starts the next step,
so no piece is ever cut to fill a step. A step never spans two epochs of a
source, so the step in which a source wraps around may be short. Every token
of a source's epoch is delivered exactly once in that epoch.

Mixtures: the next piece comes from the source furthest below its share of
the tokens delivered so far (largest ``weight * delivered_total -
delivered[source]``, ties to the lower index), so the token shares follow the
weights to within one piece, with no randomness to replay.

The sampler's whole position is a few integers per source (epoch, document
cursor, token offset inside the current document, tokens delivered);
``state_dict`` / ``load_state_dict`` resume exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from longctx.data.dataset import DocumentDataset
from longctx.data.mixture import ConcatenatedDataset, MixtureSource, mixture_fingerprint


@dataclass(frozen=True)
class Piece:
    """Tokens ``[start, stop)`` of document ``document``: one sequence of a step."""

    document: int
    start: int
    stop: int

    @property
    def length(self) -> int:
        return self.stop - self.start


class StepSampler:
    """Packs the documents of ``dataset`` into steps of at most ``tokens_per_step`` tokens.

    ``dataset``: a :class:`DocumentDataset`, or the :class:`ConcatenatedDataset`
    of a mixture. ``sources``: the mixture's sources (global document ids and
    weights, from :func:`longctx.data.mixture.open_mixture`); None: one source
    holding every document. ``tokens_per_step``: the step's token budget (all ranks together).
    ``max_doc_tokens``: the longest sequence a step may hold; longer documents
    are split. Must be <= ``tokens_per_step`` so every piece fits a step.
    ``seed``: the shuffle seed; the same seed gives the same steps.
    """

    def __init__(self, dataset: DocumentDataset | ConcatenatedDataset, tokens_per_step: int, max_doc_tokens: int,
                 seed: int, sources: list[MixtureSource] | None = None) -> None:
        for field, value in (("tokens_per_step", tokens_per_step), ("max_doc_tokens", max_doc_tokens)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"StepSampler: {field}={value!r} must be a positive integer (tokens)")
        if max_doc_tokens > tokens_per_step:
            raise ValueError(
                f"StepSampler: max_doc_tokens={max_doc_tokens} exceeds tokens_per_step={tokens_per_step}; "
                "every document piece must fit in one step: raise tokens_per_step or lower max_doc_tokens"
            )
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"StepSampler: seed={seed!r} must be a non-negative integer")
        if len(dataset) == 0 or int(dataset.lengths.sum()) == 0:
            raise ValueError(f"StepSampler: dataset {getattr(dataset, 'prefix', dataset)!r} holds no tokens")
        if sources is None:
            sources = [MixtureSource("all", np.arange(len(dataset), dtype=np.int64), 1.0)]
        for source in sources:
            if len(source.documents) == 0 or int(dataset.lengths[source.documents].sum()) == 0:
                raise ValueError(f"StepSampler: source {source.name!r} holds no tokens")
        self.dataset = dataset
        self.sources = list(sources)
        self.tokens_per_step = int(tokens_per_step)
        self.max_doc_tokens = int(max_doc_tokens)
        self.seed = int(seed)
        self.step = 0
        count = len(self.sources)
        self._epochs, self._cursors, self._offsets, self._delivered = ([0] * count for _ in range(4))
        self._orders = [self._epoch_order(s, 0) for s in range(count)]

    @property
    def epoch(self) -> int:
        """Epochs completed by the source that has completed the fewest (with one source: its epoch)."""
        return min(self._epochs)

    def _epoch_order(self, source: int, epoch: int) -> np.ndarray:
        """Global document ids in the order epoch ``epoch`` of source ``source`` visits them."""
        documents = self.sources[source].documents
        return documents[np.random.default_rng([self.seed, source, epoch]).permutation(len(documents))]

    def _next_source(self) -> int:
        """The source furthest below its token share (ties to the lowest index)."""
        total = sum(self._delivered)
        deficits = [source.weight * total - delivered for source, delivered in zip(self.sources, self._delivered)]
        return int(np.argmax(deficits))

    def next_pieces(self) -> list[Piece]:
        """Plan the next step: its pieces, in order, totalling at most ``tokens_per_step`` tokens."""
        lengths = self.dataset.lengths
        pieces: list[Piece] = []
        used = 0
        while True:
            source = self._next_source()
            document = int(self._orders[source][self._cursors[source]])
            offset, length = self._offsets[source], int(lengths[document])
            stop = min(offset + self.max_doc_tokens, length)
            if used + stop - offset > self.tokens_per_step:
                break
            if stop > offset:
                pieces.append(Piece(document, offset, stop))
                used += stop - offset
                self._delivered[source] += stop - offset
            self._offsets[source] = stop
            if stop == length:
                self._cursors[source], self._offsets[source] = self._cursors[source] + 1, 0
                if self._cursors[source] == len(self._orders[source]):
                    self._epochs[source] += 1
                    self._cursors[source] = 0
                    self._orders[source] = self._epoch_order(source, self._epochs[source])
                    break
        self.step += 1
        return pieces

    def next_step(self) -> list[np.ndarray]:
        """The next step's sequences: one ``int32 [length]`` array per piece, lengths <= ``max_doc_tokens``."""
        return self.read(self.next_pieces())

    def read(self, pieces: list[Piece]) -> list[np.ndarray]:
        """The tokens of `pieces` (from ``next_pieces``, possibly another process's): ``int32 [length]`` each.

        Reads only the memory-mapped dataset, never the sampler's position, so
        every rank can read the pieces rank 0 drew.
        """
        return [self.dataset.tokens(p.document, p.start, p.stop) for p in pieces]

    def state_dict(self) -> dict:
        """Everything needed to continue exactly here (ints, lists of ints and a string; any checkpoint format)."""
        return {
            "seed": self.seed,
            "tokens_per_step": self.tokens_per_step,
            "max_doc_tokens": self.max_doc_tokens,
            "documents": len(self.dataset),
            "mixture": mixture_fingerprint(self.sources),
            "step": self.step,
            "epochs": list(self._epochs),
            "cursors": list(self._cursors),
            "offsets": list(self._offsets),
            "delivered": list(self._delivered),
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state`` (from :meth:`state_dict` of a sampler with the same settings and mixture)."""
        expected = {"seed": self.seed, "tokens_per_step": self.tokens_per_step, "max_doc_tokens": self.max_doc_tokens,
                    "documents": len(self.dataset), "mixture": mixture_fingerprint(self.sources)}
        positions = ("epochs", "cursors", "offsets", "delivered")
        missing = sorted((set(expected) | {"step", *positions}) - set(state))
        if missing:
            raise KeyError(f"StepSampler.load_state_dict: state lacks {missing}; pass a dict from state_dict()")
        for field, value in expected.items():
            if state[field] != value:
                raise ValueError(
                    f"StepSampler.load_state_dict: saved {field}={state[field]!r} but this sampler has "
                    f"{field}={value!r}; resume with the settings and data (mixture) of the saved run"
                )
        self.step = int(state["step"])
        self._epochs, self._cursors, self._offsets, self._delivered = ([int(v) for v in state[key]] for key in positions)
        self._orders = [self._epoch_order(s, epoch) for s, epoch in enumerate(self._epochs)]
