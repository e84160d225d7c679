"""DocumentDataset: the documents of a megatron-core IndexedDataset, one per index."""
from __future__ import annotations

import os

import numpy as np

from longctx.data.megatron_format import indexed_dataset_module


class DocumentDataset:
    """Read-only view of ``<prefix>.bin`` / ``<prefix>.idx`` written by :func:`longctx.data.ingest`.

    Document ``i`` is megatron sequence ``i``; its tokens end with the
    end-of-document id. The ``.bin`` file is memory-mapped, so opening is cheap
    and every process (rank) can open its own.
    """

    def __init__(self, prefix: str) -> None:
        missing = [prefix + suffix for suffix in (".bin", ".idx") if not os.path.isfile(prefix + suffix)]
        if missing:
            raise FileNotFoundError(
                f"DocumentDataset: prefix={prefix!r} has no dataset ({', '.join(missing)} missing); "
                "create one with longctx.data.ingest(...) or use longctx.data.default_corpus()"
            )
        self.prefix = prefix
        self._indexed = indexed_dataset_module().IndexedDataset(prefix, mmap=True)
        self._lengths = np.asarray(self._indexed.sequence_lengths, dtype=np.int64)
        self._lengths.setflags(write=False)

    def __len__(self) -> int:
        """Number of documents."""
        return len(self._lengths)

    def __getitem__(self, index: int) -> np.ndarray:
        """Tokens of document ``index``: ``int32 [length]``."""
        return self.tokens(index)

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per document, ``int64 [documents]`` (read from the index, no data read)."""
        return self._lengths

    def tokens(self, index: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Tokens ``[start, stop)`` of document ``index`` as a fresh ``int32`` array."""
        if not 0 <= index < len(self):
            raise IndexError(f"DocumentDataset: index={index} outside [0, {len(self)}) for {self.prefix!r}")
        length = int(self._lengths[index])
        stop = length if stop is None else stop
        if not 0 <= start <= stop <= length:
            raise IndexError(
                f"DocumentDataset: token range [{start}, {stop}) outside document {index} of length {length}"
            )
        return self._indexed.get(int(index), offset=start, length=stop - start).astype(np.int32)
