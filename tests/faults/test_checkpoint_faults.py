"""Checkpoint integrity on 2 gloo ranks with real DCP files: checksums written, verified on resume,
bad checkpoints (256 flipped bytes, a truncated shard) named and moved aside, fallback to the newest
good one, retention."""
from __future__ import annotations

import json

import pytest
import torch

from longctx.runtime.checkpoint_files import CHECKSUMS
from tests.faults import checkpoint_cases

pytestmark = pytest.mark.timeout(300)


def _largest_shard(step_dir):
    return max(step_dir.glob("*.distcp"), key=lambda p: p.stat().st_size)


def _flip_bytes(path, count: int = 256) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    for i in range(middle, middle + count):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_bad_checkpoints_are_named_moved_aside_and_resume_falls_back(gloo_pool, tmp_path):
    pool = gloo_pool(2)
    saved = pool.run(checkpoint_cases.save_steps, str(tmp_path), [1, 2, 3], 3)[0]
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["step_1", "step_2", "step_3"]
    recorded = json.loads((root / "step_3" / CHECKSUMS).read_text())
    assert set(recorded) == {p.name for p in (root / "step_3").iterdir() if p.name != CHECKSUMS}

    flipped, truncated = _largest_shard(root / "step_3"), _largest_shard(root / "step_2")
    _flip_bytes(flipped)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    results = pool.run(checkpoint_cases.resume, str(tmp_path))

    assert results[0][:3] == results[1][:3]  # every rank agrees on what was found
    path, messages, step, params = results[0]
    assert path == str(root / "step_1") and step == 1
    assert messages[0] == (f"checkpoint {root / 'step_3'} is corrupt: file {flipped.name} has a different SHA-256 "
                           f"than when it was written (bytes changed); moved it aside to {root / 'corrupt-step_3'}")
    assert f"checkpoint {root / 'step_2'} is corrupt: file {truncated.name} has" in messages[1]
    assert "(truncated or grown); moved it aside to" in messages[1]
    assert sorted(p.name for p in root.iterdir()) == ["corrupt-step_2", "corrupt-step_3", "step_1"]
    for rank_result in results:
        for name, value in saved[1].items():
            torch.testing.assert_close(rank_result[3][name], value, rtol=0, atol=0)


def test_retention_keeps_the_newest_and_never_touches_corrupt_ones(gloo_pool, tmp_path):
    root = tmp_path / "checkpoints"
    root.mkdir()
    (root / "corrupt-step_1").mkdir()
    gloo_pool(2).run(checkpoint_cases.save_steps, str(tmp_path), [2, 3, 4, 5], 2)
    assert sorted(p.name for p in root.iterdir()) == ["corrupt-step_1", "step_4", "step_5"]


def test_missing_or_extra_files_make_a_checkpoint_bad(gloo_pool, tmp_path):
    pool = gloo_pool(2)
    pool.run(checkpoint_cases.save_steps, str(tmp_path), [1, 2, 3], 0)
    root = tmp_path / "checkpoints"
    _largest_shard(root / "step_3").unlink()
    (root / "step_2" / "stray.bin").write_bytes(b"x")
    path, messages, step, _ = pool.run(checkpoint_cases.resume, str(tmp_path))[0]
    assert step == 1 and "is missing (1 missing)" in messages[0] and "file stray.bin is not in" in messages[1]


def test_a_checkpoint_without_checksums_is_reported_not_trusted(gloo_pool, tmp_path):
    pool = gloo_pool(2)
    pool.run(checkpoint_cases.save_steps, str(tmp_path), [1, 2], 0)
    (tmp_path / "checkpoints" / "step_2" / CHECKSUMS).unlink()
    path, messages, step, _ = pool.run(checkpoint_cases.resume, str(tmp_path))[0]
    assert step == 1 and f"it has no {CHECKSUMS}, so its files cannot be verified" in messages[0]
