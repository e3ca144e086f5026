"""Pydantic's validation errors in lowcarb's words, each at its place in the policy file.

:func:`issue_for` turns one error of the policy models into an
:class:`~scheduler.policy.positions.Issue`: the location without pydantic's internal steps, the
message said plainly with a hint where one helps (``did you mean 'matchLabels'?`` from the keys
the model at that place accepts, the YAML 1.1 hint for a string YAML read as a boolean), at the
key for an unknown or misspelt key.
"""

from __future__ import annotations

import re
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import ErrorDetails

from carbon.checks import Loc, did_you_mean
from scheduler.costs.energy import UNION_TAGS
from scheduler.policy.model import Policy
from scheduler.policy.positions import Document, Issue, yaml11_hint


def issue_for(err: ErrorDetails, doc: Document) -> Issue:
    """One pydantic error of the policy models as an issue at its place in ``doc``."""
    raw = err["loc"]
    at_key = "[key]" in raw  # a mapping key of the wrong form (a class name, a term, a zone)
    loc: Loc = tuple(s for s in raw if not (isinstance(s, str) and _is_internal(s)))
    kind = err["type"]
    if kind == "extra_forbidden":
        # an unknown key belongs to the mapping that holds it: "classes.x.selector: unknown key"
        issue = doc.issue(loc, _message(err, loc), at_key=True)
        return Issue(issue.file, issue.line, issue.column, doc.path(loc[:-1]), issue.message)
    message = _message(err, loc)
    found, key_node, node = doc.find(loc)
    if kind == "string_type" and found == loc:
        hint = yaml11_hint(key_node if at_key else node, key=at_key)
        if hint:
            message = f"must be a string, but {hint}"
    return doc.issue(loc, message, at_key=at_key)


def _is_internal(step: str) -> bool:
    # pydantic adds steps such as 'function-after[...]', '[key]' or union tags to some locations
    internal = ("function-after", "function-before", "function-plain", *UNION_TAGS)
    return "[" in step or step in internal


def _message(err: ErrorDetails, loc: Loc) -> str:
    kind = err["type"]
    ctx: dict[str, Any] = dict(err.get("ctx") or {})
    value = err.get("input")
    got = _short(value)
    if kind == "extra_forbidden":
        key = loc[-1] if loc else "?"
        allowed = _allowed_keys(loc[:-1])
        hint = did_you_mean(str(key), allowed)
        listing = f"; allowed keys: {', '.join(allowed)}" if allowed and not hint else ""
        return f"unknown key {key!r}{hint}{listing}"
    if kind == "missing":
        return f"required key {loc[-1]!r} is missing" if loc else "a required key is missing"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        op = {
            "greater_than_equal": (">=", "ge"),
            "greater_than": (">", "gt"),
            "less_than_equal": ("<=", "le"),
            "less_than": ("<", "lt"),
        }[kind]
        return f"must be {op[0]} {ctx.get(op[1])} (got {got})"
    if kind == "literal_error":
        expected = str(ctx.get("expected", ""))
        options = re.findall(r"'([^']*)'", expected)
        hint = did_you_mean(str(value), options) if isinstance(value, str) else ""
        return f"must be one of {expected} (got {got}){hint}"
    if kind in ("float_parsing", "float_type", "int_parsing", "int_type"):
        return f"must be a number (got {got})"
    if kind == "int_from_float":
        return f"must be a whole number (got {got})"
    if kind == "finite_number":
        return f"must be a finite number (got {got})"
    if kind in ("bool_parsing", "bool_type"):
        return f"must be true or false (got {got})"
    if kind == "string_type":
        return f"must be a string (got {got})"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be a mapping of keys to values (got {type(value).__name__} {got})"
    if kind in ("list_type", "tuple_type"):
        return f"must be a list (got {type(value).__name__} {got})"
    if kind in ("string_too_short", "too_short"):
        return "must not be empty"
    if kind == "string_pattern_mismatch":
        return f"{got} does not have the expected form ({ctx.get('pattern')})"
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return str(ctx["error"])  # raised by lowcarb's own validators: already in its words
    return f"{got} is not valid here ({kind.replace('_', ' ')})"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _allowed_keys(loc: Loc) -> list[str]:
    """Keys the model at ``loc`` accepts (by alias), for 'did you mean' hints."""
    tp: Any = Policy
    for step in loc:
        tp = _step(tp, step)
        if tp is None:
            return []
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [f.alias or name for name, f in tp.model_fields.items()]
    return []


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _step(tp: Any, step: str | int) -> Any:
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        for name, f in tp.model_fields.items():
            if step in (name, f.alias):
                return f.annotation
        return None
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is dict and len(args) == 2:
        return args[1]
    if origin in (list, tuple) and args:
        return args[0]
    return None
