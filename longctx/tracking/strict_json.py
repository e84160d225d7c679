"""Strict JSON for metrics files: NaN and ±Infinity are not JSON, so they are written as null.

`json.dumps` writes ``NaN``/``Infinity`` by default, which strict parsers
(JavaScript, jq, most languages) reject. Every metrics file longctx writes
goes through `dumps`: non-finite floats become ``null`` and ``allow_nan=False``
makes any that slipped through an error instead of invalid output.
"""
from __future__ import annotations

import json
import math
from typing import Any


def finite_or_null(value: Any) -> Any:
    """`value` with every non-finite float (also inside dicts, lists, tuples) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_or_null(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(item) for item in value]
    return value


def dumps(value: Any, **options: Any) -> str:
    """`json.dumps` of `value` with non-finite floats as null (strict JSON; `options` go to json.dumps)."""
    return json.dumps(finite_or_null(value), allow_nan=False, **options)
