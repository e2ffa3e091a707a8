"""Turn a config mapping into a typed options dataclass: misspelt keys and values of the wrong type are refused in
one line naming the key, before any job runs (a ``"8"`` for an integer would otherwise fail deep inside torch)."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")

_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "null"}


def parse_options(cls: type[T], values: dict[str, Any], where: str) -> T:
    """Build ``cls(**values)``; an unknown key or a value of the wrong type raises ``ValueError`` naming the key
    (``{where}.{key}``), what was expected and what was given."""
    allowed = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown option(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        expected = _mismatch(value, hints.get(key, Any))
        if expected is not None:
            raise ValueError(f"{where}.{key}: expected {expected}, got {value!r}")
    return cls(**values)


def _mismatch(value: Any, hint: Any) -> str | None:
    """None when ``value`` fits the annotation ``hint``, else the expected type in words."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        wanted = [_mismatch(value, arg) for arg in args]
        return None if None in wanted else " or ".join(str(w) for w in wanted)
    if origin is list:
        if not isinstance(value, list):
            return f"a list of {_words(args[0]) if args else 'values'}"
        item = next((_mismatch(v, args[0]) for v in value if args and _mismatch(v, args[0])), None)
        return None if item is None else f"a list of {_words(args[0])}"
    if hint is float:
        return None if isinstance(value, int | float) and not isinstance(value, bool) else _NAMES[float]
    if hint is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else _NAMES[int]
    if hint in (bool, str, type(None)):
        return None if isinstance(value, hint) else _NAMES[hint]
    return None  # Any, or a type this check does not know: the class's own __post_init__ decides


def _words(hint: Any) -> str:
    return {int: "integers", float: "numbers", str: "strings", bool: "booleans"}.get(hint, str(hint))
