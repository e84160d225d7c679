"""The files of the checkpoints in a run directory: layout, checksums, quarantine, retention (no torch).

Layout: ``<output_dir>/checkpoints/step_<N>/`` holds DCP's files plus
``checksums.json`` (size and SHA-256 of every other file in the directory),
written after DCP returns and before the directory is renamed from
``.tmp-step_<N>``. A checkpoint is *complete* when it has ``.metadata`` (DCP
writes it last); it is *good* when its ``checksums.json`` lists every file
present, with its size and digest (a ``step_<N>`` without one was not written
by this code: it is reported, not trusted). A bad one is renamed to
``corrupt-step_<N>`` (kept for inspection, never loaded, never pruned).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

_STEP_DIR = re.compile(r"^step_(\d+)$")
METADATA = ".metadata"
CHECKSUMS = "checksums.json"
CORRUPT_PREFIX = "corrupt-"
_CHUNK = 1 << 22


def checkpoints_dir(output_dir: str | os.PathLike) -> Path:
    return Path(output_dir) / "checkpoints"


def step_dirs(output_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Every ``step_<N>`` directory (complete or not) as (N, path), ascending N."""
    root = checkpoints_dir(output_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), entry) for entry in root.iterdir() if (m := _STEP_DIR.match(entry.name))]
    return sorted(found)


def complete_checkpoints(output_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """The complete checkpoints (``.metadata`` present), newest first."""
    return [(step, path) for step, path in reversed(step_dirs(output_dir)) if (path / METADATA).is_file()]


def checkpoint_data_files(directory: Path) -> list[str]:
    """Paths (relative, sorted) of every file in `directory` except ``checksums.json``."""
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file() and p.name != CHECKSUMS)


def file_digest(path: Path) -> dict[str, int | str]:
    """``{"bytes": size, "sha256": hex digest}`` of one file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def write_checksums(directory: Path, digests: dict[str, dict]) -> None:
    """Write `digests` (relative path -> `file_digest`) as ``checksums.json`` (write, then rename)."""
    temporary = directory / f".{CHECKSUMS}.tmp"
    temporary.write_text(json.dumps(dict(sorted(digests.items())), indent=1) + "\n")
    os.replace(temporary, directory / CHECKSUMS)


def expected_digests(directory: Path) -> dict[str, dict] | str:
    """The recorded digests of `directory`, or a sentence saying why they cannot be read."""
    if not (directory / CHECKSUMS).exists():
        return f"it has no {CHECKSUMS}, so its files cannot be verified (written by an older longctx?)"
    try:
        recorded = json.loads((directory / CHECKSUMS).read_text())
    except (OSError, ValueError) as error:
        return f"{CHECKSUMS} is unreadable ({error})"
    return recorded if isinstance(recorded, dict) else f"{CHECKSUMS} is not a mapping of files"


def listing_problem(directory: Path, recorded: dict[str, dict]) -> str | None:
    """A sentence naming files missing from or added to `directory` since the checksums were taken."""
    present = set(checkpoint_data_files(directory))
    missing, extra = sorted(set(recorded) - present), sorted(present - set(recorded))
    if missing:
        return f"file {missing[0]} is missing ({len(missing)} missing)"
    if extra:
        return f"file {extra[0]} is not in {CHECKSUMS}"
    return None


def digest_problem(directory: Path, name: str, expected: dict) -> str | None:
    """A sentence naming how file `name` differs from its recorded size/digest, or None."""
    path = directory / name
    try:
        size = path.stat().st_size
        if size != expected.get("bytes"):
            return f"file {name} has {size} bytes, {expected.get('bytes')} were written (truncated or grown)"
        if file_digest(path)["sha256"] != expected.get("sha256"):
            return f"file {name} has a different SHA-256 than when it was written (bytes changed)"
    except OSError as error:
        return f"file {name} cannot be read ({error.strerror})"
    return None


def quarantine(path: Path) -> Path:
    """Rename checkpoint `path` (``step_<N>``) to ``corrupt-step_<N>`` (``-2``, ``-3``... if taken); returns it."""
    target = path.with_name(CORRUPT_PREFIX + path.name)
    suffix = 2
    while target.exists():
        target, suffix = path.with_name(f"{CORRUPT_PREFIX}{path.name}-{suffix}"), suffix + 1
    os.replace(path, target)
    return target


def prune_checkpoints(output_dir: str | os.PathLike, keep: int) -> list[Path]:
    """Delete all but the newest `keep` complete checkpoints (0: keep all); returns the deleted paths."""
    if keep <= 0:
        return []
    doomed = [path for _, path in complete_checkpoints(output_dir)[keep:]]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed
