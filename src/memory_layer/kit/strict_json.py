"""JSON as the API reads it: RFC 8259 text, stricter than `json.loads`.

`json.loads` takes a repeated key silently (the last one wins), reads `NaN`, `Infinity` and
`1e400` as floats PostgreSQL cannot store, and fails with RecursionError on deep nesting. The API
refuses all of these with a 422 naming the problem, before any route sees the body.
"""

from __future__ import annotations

import json
import math
from typing import Any

# Deeper than any metadata a client means to send, far below the interpreter's recursion limit
# and PostgreSQL's jsonb nesting limit.
MAX_DEPTH = 64


class JSONTextError(ValueError):
    """Why a JSON text was refused; `kind` is the validation error type clients see."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise JSONTextError("json_duplicate_key", f"the key {key!r} appears more than once")
        result[key] = value
    return result


def _constant(name: str) -> float:
    raise JSONTextError("json_invalid", f"{name} is not a JSON number")


def _float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise JSONTextError("json_number_out_of_range", f"the number {text[:40]} is out of range")
    return value


def _depth(value: Any) -> int:
    """Nesting depth of arrays and objects, without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            break
        stack.extend((child, level + 1) for child in children)
    return deepest


def loads(text: str | bytes) -> Any:
    """Parse one JSON text; JSONTextError says why it is refused."""
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        value = json.loads(
            text, object_pairs_hook=_object, parse_constant=_constant, parse_float=_float
        )
    except JSONTextError:
        raise
    except UnicodeDecodeError as exc:
        raise JSONTextError("json_invalid", f"the body is not UTF-8 (byte {exc.start})") from exc
    except RecursionError as exc:
        raise JSONTextError("json_too_deep", f"nested deeper than {MAX_DEPTH} levels") from exc
    except ValueError as exc:  # JSONDecodeError, and integers past the interpreter's digit limit
        raise JSONTextError("json_invalid", str(exc)) from exc
    if _depth(value) > MAX_DEPTH:
        raise JSONTextError("json_too_deep", f"nested deeper than {MAX_DEPTH} levels")
    return value
