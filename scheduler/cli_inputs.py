"""Strict parsing of `longctx plan`'s inputs: each bad value is one line naming it and the fix (exit 2).

- integers are plain ASCII decimal digits (no ``1_000``, ``+50``, ``١٢``, no
  sign), within int64, whether given on the command line or in a lengths file;
- floats are finite (``inf``/``nan`` are refused);
- a lengths file is a readable UTF-8 text file, not a directory;
- ``--out`` is checked before any solving: not a directory, and its directory
  exists or can be created and is writable (tested with a probe file).
"""
from __future__ import annotations

import argparse
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Callable, NoReturn

from longctx.scheduler.errors import SchedulerInputError
from longctx.scheduler.input_files import read_text_file

INT64_MAX = 2**63 - 1
_DECIMAL = re.compile(r"[0-9]+", re.ASCII)


class OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr (exit 2), pointing at --help."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def parse_count(text: str, what: str, minimum: int = 1) -> int:
    """`text` as an integer in [minimum, int64 max]; SchedulerInputError naming `what` otherwise."""
    if not _DECIMAL.fullmatch(text):
        raise SchedulerInputError(f"{what}: {text!r} is not a whole number; write plain digits 0-9 "
                                  "(no sign, underscores, spaces or other scripts' digits)")
    value = int(text)
    if value > INT64_MAX:
        raise SchedulerInputError(f"{what}: {text} is above the largest supported value {INT64_MAX} (int64)")
    if value < minimum:
        raise SchedulerInputError(f"{what}: {value} must be at least {minimum}")
    return value


def count_arg(minimum: int) -> Callable[[str], int]:
    """argparse type: a whole number >= `minimum` (see `parse_count`)."""
    def parse(text: str) -> int:
        try:
            return parse_count(text, "value", minimum)
        except SchedulerInputError as error:
            raise argparse.ArgumentTypeError(str(error).removeprefix("value: ")) from None
    return parse


def finite_arg(minimum: float, inclusive: bool) -> Callable[[str], float]:
    """argparse type: a finite float above `minimum` (or equal to it when `inclusive`)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not finite; give a finite number")
        if value < minimum or (value == minimum and not inclusive):
            raise argparse.ArgumentTypeError(f"{text} must be {'>=' if inclusive else '>'} {minimum:g}")
        return value
    return parse


def read_lengths_file(path: str | Path) -> list[int]:
    """Lengths from a UTF-8 text file, one positive whole number per line (blank lines and # comments skipped)."""
    where = f"lengths file {str(path)!r}"
    text = read_text_file(path, "lengths file", "a UTF-8 text file with one length per line")
    lengths = []
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.split("#", 1)[0].strip()
        if entry:
            lengths.append(parse_count(entry, f"{where} line {number}"))
    if not lengths:
        raise SchedulerInputError(f"{where} holds no lengths")
    return lengths


def check_output_file(path: Path) -> None:
    """SchedulerInputError unless a file can be written at `path` (nothing is created)."""
    where = f"--out {str(path)!r}"
    if path.is_dir():
        raise SchedulerInputError(f"{where} is a directory; give a file path, e.g. {str(path / 'plan.json')!r}")
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise SchedulerInputError(f"{where}: {str(parent)!r} is a file, not a directory; give a path in a directory")
    try:
        handle, probe = tempfile.mkstemp(dir=parent, prefix=".longctx-plan-probe-")
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise SchedulerInputError(f"{where}: cannot write in {str(parent)!r} ({error.strerror})") from None
