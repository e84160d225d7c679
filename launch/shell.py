"""Shell quoting for rendered scripts: every value that comes from a config goes through here."""
from __future__ import annotations

import shlex


def quote(value: object) -> str:
    """`value` as one inert shell word (no expansion, no word splitting)."""
    return shlex.quote(str(value))


def bash_array(name: str, values: list[str]) -> str:
    """`NAME=('a' 'b c' ...)`: a bash array whose elements are exactly `values`."""
    return f"{name}=(" + " ".join(quote(v) for v in values) + ")"


def directive(option: str, value: object | None = None) -> str:
    """One `#SBATCH --option=value` line (sbatch reads shell quoting in directives)."""
    return f"#SBATCH --{option}" if value is None else f"#SBATCH --{option}={quote(value)}"
