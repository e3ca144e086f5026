"""Cross-field checks of a policy document: plain functions over its data (see
:mod:`carbon.checks`).

The models of :mod:`scheduler.policy.model` call the function of their own level when built in code;
:mod:`scheduler.policy.validate` runs :func:`policy_problems` over the whole document beside field
validation, so these problems are reported in the same pass as wrong fields. Each function skips
values of the wrong type (field validation reports those) and returns every problem it finds.
"""

from __future__ import annotations

from carbon.checks import Problem
from carbon.config import carbon_problems
from scheduler.costs.energy import energy_problems

DEFAULT_CLASS = "default"


def requirement_problems(req: object) -> list[Problem]:
    """An ``In``/``NotIn`` requirement needs values; ``Exists``/``DoesNotExist`` takes none."""
    if not isinstance(req, dict):
        return []
    op, values = req.get("operator"), req.get("values")
    if op in ("In", "NotIn") and (values is None or values == []):
        return [((), f"operator {op} needs a non-empty 'values' list")]
    if op in ("Exists", "DoesNotExist") and values:
        return [((), f"operator {op} takes no 'values'; remove them")]
    return []


def default_class_problems(classes: object) -> list[Problem]:
    """The ``default`` class catches every pod the others do not select: it has no selector."""
    if not isinstance(classes, dict):
        return []
    default = classes.get(DEFAULT_CLASS)
    selector = default.get("selector") if isinstance(default, dict) else None
    if isinstance(selector, dict) and any(selector.values()):
        return [
            (
                ("classes", DEFAULT_CLASS, "selector"),
                "the default class catches every pod other classes do not select; remove its "
                "selector",
            )
        ]
    return []


def policy_problems(doc: object) -> list[Problem]:
    """Every cross-field problem of a policy document (raw YAML data or a dumped policy)."""
    if not isinstance(doc, dict):
        return []
    carbon = carbon_problems(doc.get("carbon"))
    out: list[Problem] = [(("carbon", *loc), msg) for loc, msg in carbon]
    classes = doc.get("classes")
    for name, cls in classes.items() if isinstance(classes, dict) else ():
        if not isinstance(name, str) or not isinstance(cls, dict):
            continue
        base = ("classes", name)
        selector = cls.get("selector")
        exprs = selector.get("matchExpressions") if isinstance(selector, dict) else None
        for i, req in enumerate(exprs if isinstance(exprs, list) else []):
            where = (*base, "selector", "matchExpressions", i)
            out += [((*where, *loc), msg) for loc, msg in requirement_problems(req)]
    out += default_class_problems(classes)
    prices = doc.get("prices")
    if isinstance(prices, dict):
        out += energy_problems(prices.get("energy"), ("prices", "energy"))
    return out
