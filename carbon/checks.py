"""Cross-field checks of the policy models, kept apart from field validation.

A check (a fallback chain that does not end with ``static``, a zone-mapping loop, an ``In``
requirement without values) is a plain function over the document's data that returns every
:data:`Problem` it finds, each with its location, and tolerates values of the wrong type (field
validation reports those). The models' validators call these functions, so a model built in code
is checked as before. The policy loader validates with :data:`SEPARATE_CHECKS` in the context,
which makes those validators stand aside, and runs the functions itself over the whole
document: then a wrong field never hides a cross-field problem, and every error is reported in
one pass.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

from pydantic import ValidationInfo

Loc = tuple[str | int, ...]
Problem = tuple[Loc, str]
"""A location in the document (keys and list indexes) and a message in lowcarb's words."""

SEPARATE_CHECKS = "lowcarb.separate_checks"
"""Validation-context key: the caller runs the cross-field checks itself."""


def separate(info: ValidationInfo) -> bool:
    """True when the caller asked to run the cross-field checks itself."""
    return bool(info.context and info.context.get(SEPARATE_CHECKS))


def path_text(loc: Loc) -> str:
    """``("providers", 0, "type")`` -> ``"providers[0].type"``."""
    out = ""
    for step in loc:
        if isinstance(step, int) and not isinstance(step, bool):
            out += f"[{step}]"
        else:
            out += ("." if out else "") + str(step)
    return out


def raise_problems(problems: Iterable[Problem], prefix: Loc = ()) -> None:
    """Raise one ``ValueError`` naming every problem (for validators of models built in code)."""
    lines = [
        f"{path_text((*prefix, *loc))}: {msg}" if (*prefix, *loc) else msg for loc, msg in problems
    ]
    if lines:
        raise ValueError("; ".join(lines))


def number(value: object) -> float | None:
    """``value`` as pydantic's lax mode reads a number (``1``, ``0.5``, ``"0.5"``), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def did_you_mean(word: str, options: Sequence[str]) -> str:
    """``", did you mean 'matchLabels'?"`` for a close or differently-cased option, else ``""``."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    if not close:
        lowered = {o.lower(): o for o in options}
        close = [lowered[word.lower()]] if word.lower() in lowered else []
    return f", did you mean {close[0]!r}?" if close else ""
