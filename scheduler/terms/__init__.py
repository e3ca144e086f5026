"""Scoring terms: one file each, and :data:`REGISTRY`, the one list of them by name.

A term is registered here and nowhere else (no registration by import side effect): the policy
validates weights against this mapping, the engine builds its terms from it, and every process
sees the same terms whatever else it imported. Adding a term is its file, its test and one line
below (and, when it has per-class settings, its ``Args`` among the bases of
:class:`scheduler.policy.model.WorkloadClass`).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from scheduler.terms.base import Context, Term, TermArgs, TermScore
from scheduler.terms.carbon import Carbon
from scheduler.terms.constraints import ConstraintsFilter
from scheduler.terms.gpu_fit import GpuFit
from scheduler.terms.least_allocated import LeastAllocated

#: Every term by the name policies use (its ``name``); unweighted always-filter terms run in
#: this order, filter-only terms after them.
REGISTRY: Mapping[str, type[Term[Any]]] = MappingProxyType(
    {t.name: t for t in (GpuFit, Carbon, LeastAllocated, ConstraintsFilter)}
)


def get_term(name: str) -> type[Term[Any]]:
    """The term class called ``name``; an unknown name is a KeyError listing the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise KeyError(f"unknown scoring term {name!r}; known terms: {known}") from None


__all__ = ["REGISTRY", "Context", "Term", "TermArgs", "TermScore", "get_term"]
