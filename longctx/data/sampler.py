"""StepSampler: deterministic, resumable, document-aware packing of steps.

Each epoch visits every document once in an order drawn from
``numpy.random.default_rng([seed, epoch])``. A document longer than
``max_doc_tokens`` is cut into consecutive pieces of ``max_doc_tokens`` tokens
(the last one shorter). Pieces fill a step in order while they fit into
``tokens_per_step``; the first piece that does not fit starts the next step,
so no piece is ever cut to fill a step. A step never spans two epochs, so the
last step of an epoch may be short. Every token of an epoch is delivered
exactly once in that epoch.

The sampler's whole position is three integers (epoch, document cursor, token
offset inside the current document); ``state_dict`` / ``load_state_dict``
resume exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from longctx.data.dataset import DocumentDataset


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

    ``tokens_per_step``: the step's token budget (all ranks together).
    ``max_doc_tokens``: the longest sequence a step may hold; longer documents
    are split. Must be <= ``tokens_per_step`` so every piece fits a step.
    ``seed``: the shuffle seed; the same seed gives the same steps.
    """

    def __init__(self, dataset: DocumentDataset, tokens_per_step: int, max_doc_tokens: int, seed: int) -> None:
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
        self.dataset = dataset
        self.tokens_per_step = int(tokens_per_step)
        self.max_doc_tokens = int(max_doc_tokens)
        self.seed = int(seed)
        self.epoch = 0
        self.step = 0
        self._cursor = 0
        self._offset = 0
        self._order = self._epoch_order(0)

    def _epoch_order(self, epoch: int) -> np.ndarray:
        """Document indices in the order epoch ``epoch`` visits them."""
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.dataset))

    def next_pieces(self) -> list[Piece]:
        """Plan the next step: its pieces, in order, totalling at most ``tokens_per_step`` tokens."""
        lengths = self.dataset.lengths
        pieces: list[Piece] = []
        used = 0
        while self._cursor < len(self._order):
            document = int(self._order[self._cursor])
            stop = min(self._offset + self.max_doc_tokens, int(lengths[document]))
            if used + stop - self._offset > self.tokens_per_step:
                break
            if stop > self._offset:
                pieces.append(Piece(document, self._offset, stop))
                used += stop - self._offset
            self._offset = stop
            if self._offset == int(lengths[document]):
                self._cursor, self._offset = self._cursor + 1, 0
        if self._cursor == len(self._order):
            self.epoch, self._cursor, self._offset = self.epoch + 1, 0, 0
            self._order = self._epoch_order(self.epoch)
        self.step += 1
        return pieces

    def next_step(self) -> list[np.ndarray]:
        """The next step's sequences: one ``int32 [length]`` array per piece, lengths <= ``max_doc_tokens``."""
        return [self.dataset.tokens(p.document, p.start, p.stop) for p in self.next_pieces()]

    def state_dict(self) -> dict[str, int]:
        """Everything needed to continue exactly here (plain ints; safe for any checkpoint format)."""
        return {
            "seed": self.seed,
            "tokens_per_step": self.tokens_per_step,
            "max_doc_tokens": self.max_doc_tokens,
            "documents": len(self.dataset),
            "epoch": self.epoch,
            "step": self.step,
            "cursor": self._cursor,
            "offset": self._offset,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from ``state`` (from :meth:`state_dict` of a sampler with the same settings)."""
        expected = {"seed": self.seed, "tokens_per_step": self.tokens_per_step,
                    "max_doc_tokens": self.max_doc_tokens, "documents": len(self.dataset)}
        missing = sorted((set(expected) | {"epoch", "step", "cursor", "offset"}) - set(state))
        if missing:
            raise KeyError(f"StepSampler.load_state_dict: state lacks {missing}; pass a dict from state_dict()")
        for field, value in expected.items():
            if int(state[field]) != value:
                raise ValueError(
                    f"StepSampler.load_state_dict: saved {field}={int(state[field])} but this sampler has "
                    f"{field}={value}; resume with the settings and data of the saved run"
                )
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self._cursor, self._offset = int(state["cursor"]), int(state["offset"])
        self._order = self._epoch_order(self.epoch)
