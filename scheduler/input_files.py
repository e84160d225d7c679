"""Reading the scheduler's input files (lengths, cluster, cost profile) with one-line errors."""
from __future__ import annotations

from pathlib import Path

from longctx.scheduler.errors import SchedulerInputError


def read_text_file(path: str | Path, what: str, expected: str) -> str:
    """The UTF-8 text of `path`; SchedulerInputError naming `what` (e.g. "lengths file") and the `expected`
    kind of file when it is a directory, missing, unreadable or not UTF-8."""
    path = Path(path)
    where = f"{what} {str(path)!r}"
    if path.is_dir():
        raise SchedulerInputError(f"{where} is a directory; give {expected}")
    if not path.exists():
        raise SchedulerInputError(f"{where} does not exist")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise SchedulerInputError(f"{where} is not UTF-8 text (byte 0x{error.object[error.start]:02x} at offset "
                                  f"{error.start}); give {expected}") from None
    except OSError as error:
        raise SchedulerInputError(f"{where} cannot be read ({error.strerror})") from None
