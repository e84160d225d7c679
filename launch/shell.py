"""Shell quoting for rendered scripts: every value that comes from a config goes through here.

Quoting keeps a value one shell word, but not one *line*: a newline inside
quotes still ends a ``#SBATCH`` directive or a ``#`` comment, and what follows
runs as a command. So every value that lands in a directive or a comment
(options, the job directory, the working directory, log paths) must pass
`require_single_line` first; `directive` and `comment` enforce it.
"""
from __future__ import annotations

import shlex

#: characters that would split a script line (or truncate it, for NUL)
LINE_BREAKERS = "\n\r\0"


class ScriptValueError(ValueError):
    """A value cannot be written into a script line; the message names it and the fix."""


def require_single_line(name: str, value: object) -> str:
    """`str(value)`, or ScriptValueError when it holds a newline, carriage return or NUL."""
    text = str(value)
    if any(ch in text for ch in LINE_BREAKERS):
        raise ScriptValueError(
            f"{name}={text!r} contains a newline, carriage return or NUL; job scripts hold such values on one "
            "line each (SLURM directives, comments), so remove it (rename the directory, or launch from another)"
        )
    return text


def quote(value: object) -> str:
    """`value` as one inert shell word (no expansion, no word splitting)."""
    return shlex.quote(str(value))


def bash_array(name: str, values: list[str]) -> str:
    """`NAME=('a' 'b c' ...)`: a bash array whose elements are exactly `values`."""
    return f"{name}=(" + " ".join(quote(v) for v in values) + ")"


def directive(option: str, value: object | None = None) -> str:
    """One `#SBATCH --option=value` line (sbatch reads shell quoting in directives); `value` must be one line."""
    if value is None:
        return f"#SBATCH --{option}"
    return f"#SBATCH --{option}={quote(require_single_line(f'#SBATCH --{option}', value))}"


def comment(text: str, **values: object) -> str:
    """`# text` with `values` formatted in (``{name}`` fields), each required to be one line."""
    return "# " + text.format(**{name: require_single_line(name, value) for name, value in values.items()})
