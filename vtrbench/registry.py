"""The registered method classes by name, with their kind, importable without torch.

The workflow plans its jobs from the kinds alone (an embedding or pair method is trained, a re-ranker combines
two trained ones, an external method's files come from a user's rule), so the Snakemake process reads this table
and never imports a method. ``vtrbench.methods.resolve`` imports the class itself when a job needs it;
``tests/test_methods.py`` checks that each class's ``kind`` is the one written here. The design classes a method
declares (``DESIGNS``) live here too, so the report reads their names without importing a method.
"""

from __future__ import annotations

import importlib
import os
import sys

# name -> ("module:Class", kind). Users may also give "my_package.module:MyMethod" directly (its kind is then read
# from the class, which imports it from the working directory: README, "Adding a method").
METHODS: dict[str, tuple[str, str]] = {
    "dual_encoder": ("baselines.dual_encoder:DualEncoder", "embedding"),
    "cret": ("cret.model:CRET", "embedding"),
    "cross_encoder": ("baselines.cross_encoder:CrossEncoder", "pair"),
    "xpool": ("baselines.xpool:XPool", "pair"),
    "late_interaction": ("baselines.late_interaction:LateInteraction", "pair"),
    "rerank": ("vtrbench.rerank:Rerank", "rerank"),
    "external": ("vtrbench.methods:ExternalMethod", "external"),
}
TRAINED_KINDS = ("embedding", "pair")  # kinds the suite trains and evaluates itself

# The design classes a method declares (``vtrbench.methods.RetrievalMethod.design``; the report shows them), each
# with what it means, in the order of the spectrum (one vector per video to a joint model of every pair). A class
# that declares none is ``unspecified``.
DESIGNS: dict[str, str] = {
    "single vector": "one vector per caption and per video, scored by their inner product (dual encoder)",
    "centres": "a global vector plus K learned centres per video, one flat vector an index stores (CRET)",
    "multi-vector": "several vectors per caption and per video, matched at query time (late interaction)",
    "query-conditioned": "the video's vector is pooled anew for each caption (X-Pool)",
    "cross-encoder": "a joint model reads caption and video together for every pair",
    "two-stage": "an embedding method's top k re-scored by a pair method (rerank)",
    "unspecified": "the default of a class or external method that declares none",
}
DEFAULT_DESIGN = "unspecified"


def check_design(design: object, where: str) -> str:
    """``design`` if it is one of :data:`DESIGNS`; otherwise ValueError naming ``where`` and the choices."""
    if design not in DESIGNS:
        raise ValueError(f"{where}: design must be one of {', '.join(map(repr, DESIGNS))}, got {design!r}")
    return str(design)


def target(class_name: str) -> str:
    """``module:Class`` of a registered name (or of a ``module:Class`` given directly).

    Raises:
        ValueError: neither a registered name nor ``module:Class``, listing the registered ones.
    """
    entry = METHODS.get(class_name)
    if entry is not None:
        return entry[0]
    if ":" not in class_name:
        raise ValueError(f"unknown method class {class_name!r}; choose one of: {', '.join(sorted(METHODS))}")
    return class_name


def import_class(class_name: str) -> object:
    """The object ``module:Class`` names, imported with the working directory on the import path.

    The working directory (where ``snakemake`` / ``make run`` runs) is the documented home of a user's method
    module; the ``snakemake`` launcher, unlike ``python -m``, does not put it on ``sys.path`` itself, so the
    Snakemake process, ``check-config`` and every job import a user's class from the same place.

    Raises:
        ValueError: the module or the attribute cannot be imported (the message says where it was looked for).
    """
    module_name, _, attr = target(class_name).partition(":")
    here = os.getcwd()
    if here not in sys.path:
        sys.path.append(here)
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(
            f"cannot import method class {class_name!r}: {err} (a module:Class is imported from the working "
            f"directory {here} or an installed package)"
        ) from err


def kind_of(class_name: str) -> str:
    """The kind of a method class: from this table for a registered name, from the class for ``module:Class``."""
    entry = METHODS.get(class_name)
    if entry is not None:
        return entry[1]
    kind = getattr(import_class(class_name), "kind", None)
    if kind not in (*TRAINED_KINDS, "rerank", "external"):
        raise ValueError(f"{class_name!r} is not a method class (no kind of embedding, pair, rerank or external)")
    return str(kind)
