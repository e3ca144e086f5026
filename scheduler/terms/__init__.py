"""Scoring terms: each one file, registered by name with ``@term("name")``.

Importing this package registers the built-in terms.
"""

from scheduler.terms import carbon, gpu_fit  # noqa: F401  (registration side effects)
from scheduler.terms.base import REGISTRY, Context, Term, TermScore, get_term, term

__all__ = ["REGISTRY", "Context", "Term", "TermScore", "get_term", "term"]
