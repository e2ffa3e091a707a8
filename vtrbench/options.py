"""Turn a config mapping into a typed options dataclass, rejecting misspelt keys with the allowed ones listed."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def parse_options(cls: type[T], values: dict[str, Any], where: str) -> T:
    """Build ``cls(**values)``; an unknown key raises ``ValueError`` naming it, ``where`` and the choices."""
    allowed = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown option(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    return cls(**values)
