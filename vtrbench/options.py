"""Turn a config mapping into a typed options dataclass: misspelt keys and values of the wrong type are refused in
one line naming the key, before any job runs (a ``"8"`` for an integer would otherwise fail deep inside torch).

A number's range is part of its annotation, so it is checked in the same place and named the same way:
``num_centres: Annotated[int, AtLeast(1)] = 8`` refuses ``0`` with ``methods.cret.num_centres: expected an integer
>= 1, got 0``."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Annotated, Any, TypeVar

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Bound:
    """The lowest value a number option may take (``strict``: the bound itself excluded)."""

    low: float
    strict: bool = False

    def admits(self, value: float) -> bool:
        return value > self.low if self.strict else value >= self.low

    def words(self) -> str:
        return f"{'>' if self.strict else '>='} {self.low:g}"


def AtLeast(low: float) -> Bound:
    return Bound(low)


def Above(low: float) -> Bound:
    return Bound(low, strict=True)


Count = Annotated[int, AtLeast(1)]  # a size, depth or number of steps
NonNegativeInt = Annotated[int, AtLeast(0)]
Positive = Annotated[float, Above(0)]  # a temperature, a learning-rate scale
NonNegative = Annotated[float, AtLeast(0)]  # a loss or score weight


_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "null"}


def parse_options(cls: type[T], values: dict[str, Any], where: str) -> T:
    """Build ``cls(**values)``; an unknown key or a value of the wrong type raises ``ValueError`` naming the key
    (``{where}.{key}``), what was expected and what was given."""
    allowed = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown option(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    hints = typing.get_type_hints(cls, include_extras=True)
    for key, value in values.items():
        expected = _mismatch(value, hints.get(key, Any))
        if expected is not None:
            raise ValueError(f"{where}.{key}: expected {expected}, got {value!r}")
    return cls(**values)


def _mismatch(value: Any, hint: Any) -> str | None:
    """None when ``value`` fits the annotation ``hint``, else the expected type in words."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        base, bounds = _bounded(hint)
        wrong = _mismatch(value, base)
        if wrong is not None or all(b.admits(value) for b in bounds):
            return wrong
        return " ".join([_NAMES.get(base, str(base)), *(b.words() for b in bounds)])
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
    if typing.get_origin(hint) is typing.Annotated:
        base, bounds = _bounded(hint)
        return " ".join([_words(base), *(b.words() for b in bounds)])
    return {int: "integers", float: "numbers", str: "strings", bool: "booleans"}.get(hint, str(hint))


def _bounded(hint: Any) -> tuple[Any, list[Bound]]:
    """An ``Annotated`` hint's base type and its bounds."""
    return typing.get_args(hint)[0], [b for b in hint.__metadata__ if isinstance(b, Bound)]
