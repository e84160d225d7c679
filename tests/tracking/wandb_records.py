"""Read the history rows back from a wandb run file (``run-<id>.wandb``).

wandb >= 0.31 writes the file from its Go core and ships no Python reader, so
this decodes the documented format: a 7-byte header (``:W&B``, magic 0xBEE1,
version 0), then LevelDB-log records in 32 KiB blocks, each with a 7-byte header
(crc32, uint16 length, uint8 type: 1 full, 2 first, 3 middle, 4 last) and a
protobuf ``wandb_internal_pb2.Record`` as payload.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

BLOCK_BYTES = 32 * 1024
HEADER = b":W&B\xe1\xbe\x00"
RECORD_HEADER = struct.Struct("<IHB")
FULL, LAST = 1, 4


def read_records(path: Path) -> list:
    """Every protobuf Record in the run file, in write order."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    if not data.startswith(HEADER):
        raise ValueError(f"{path} does not start with the wandb header {HEADER!r}")
    records, chunks, position = [], b"", len(HEADER)
    while position + RECORD_HEADER.size <= len(data):
        left_in_block = BLOCK_BYTES - position % BLOCK_BYTES
        if left_in_block < RECORD_HEADER.size:
            position += left_in_block
            continue
        _, length, kind = RECORD_HEADER.unpack_from(data, position)
        position += RECORD_HEADER.size
        chunks += data[position:position + length]
        position += length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunks)
            records.append(record)
            chunks = b""
    return records


def history_rows(path: Path) -> list[dict[str, float]]:
    """The logged history rows: ``{metric: value, "_step": step, ...}`` per ``log`` call."""
    rows = []
    for record in read_records(path):
        if record.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item})
    return rows
