"""Policy validation with every error at once, each with file, line, column and field path.

The one policy loader: every command that reads a policy file comes through here. YAML is
composed into nodes first (so each value keeps its position) and duplicate keys are caught there
(PyYAML would silently keep the last one). Then two passes over the document, whose errors are
reported together:

* field validation by the pydantic models of :mod:`scheduler.policy.model`, with their cross-field
  validators standing aside (:data:`carbon.checks.SEPARATE_CHECKS`), so one pass reports every
  wrong field;
* the cross-field checks of :mod:`scheduler.policy.checks` (fallback chain, zone-mapping loops,
  selector requirements, weights), over the validated policy when every field is valid, else over
  the raw data, so they run even when some field is wrong.

Each problem is mapped back to the YAML node at its path and said in lowcarb's words with a hint
where one helps (``did you mean 'matchLabels'?``, ``quote it as "NO"``). Warnings (valid, but
probably not what was meant) come from :func:`_warnings` and :mod:`scheduler.policy.carbon_lint`
once
the policy is valid.
"""

from __future__ import annotations

import fnmatch
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from carbon.checks import SEPARATE_CHECKS, Loc, Problem, did_you_mean, path_text
from scheduler.policy.checks import policy_problems
from scheduler.policy.model import Policy


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem in a policy file."""

    file: str
    line: int  # 1-based
    column: int  # 1-based
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}:{self.column}: {where}{self.message}"


class PolicyError(ValueError):
    """A policy that failed validation; ``issues`` lists every problem found."""

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = issues
        count = f"{len(issues)} error{'s' if len(issues) != 1 else ''}"
        super().__init__(f"invalid policy ({count}):\n" + "\n".join(f"  {i}" for i in issues))


@dataclass(frozen=True, slots=True)
class Checked:
    """What :func:`check_document` found: the policy (None when invalid), errors, warnings."""

    policy: Policy | None
    errors: list[Issue]
    warnings: list[Issue] = field(default_factory=list)


def load_checked(path: Path) -> Policy:
    """Read and validate ``path``; raise :class:`PolicyError` with every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError([Issue(str(path), 1, 1, "", f"cannot read the file: {exc}")]) from None
    return check_text(text, str(path))


def check_text(text: str, source: str = "<policy>") -> Policy:
    """Validate policy YAML ``text``; raise :class:`PolicyError` with every problem."""
    policy, issues = validate_text(text, source)
    if policy is None:
        raise PolicyError(issues)
    return policy


def validate_text(text: str, source: str = "<policy>") -> tuple[Policy | None, list[Issue]]:
    """The policy (None when invalid) and every error found in ``text``."""
    checked = check_document(text, source, warnings=False)
    return checked.policy, checked.errors


def lint_text(text: str, source: str = "<policy>") -> list[Issue]:
    """Warnings for a valid policy: owner kinds that look like typos, classes no selector can
    reach, residency zones no carbon source knows, and the carbon-coverage warnings of
    :mod:`scheduler.policy.carbon_lint`. Empty for an invalid policy."""
    return check_document(text, source).warnings


def check_document(text: str, source: str = "<policy>", *, warnings: bool = True) -> Checked:
    """Every error in ``text`` at once and, when it is valid, the warnings."""
    doc = _Document.parse(text, source)
    if isinstance(doc, Issue):
        return Checked(None, [doc])
    errors = _duplicates(doc.root, source)
    if not isinstance(doc.data, dict):
        kind = type(doc.data).__name__
        errors.append(
            Issue(source, 1, 1, "", f"expected a mapping with apiVersion, kind, ... (got {kind})")
        )
        return Checked(None, errors)
    policy: Policy | None = None
    try:
        policy = Policy.model_validate(doc.data, context={SEPARATE_CHECKS: True})
    except ValidationError as exc:
        errors += [_issue(err, doc) for err in exc.errors(include_url=False)]
    # cross-field checks see the validated values when there are any, else the raw data
    checked = policy.model_dump(by_alias=True) if policy is not None else doc.data
    errors += [doc.issue(loc, message) for loc, message in policy_problems(checked)]
    if errors:
        return Checked(None, _ordered(errors))
    assert policy is not None
    if not warnings:
        return Checked(policy, [])
    from scheduler.policy.carbon_lint import (
        carbon_warnings,  # data tables: loaded only when linting
    )

    found = _warnings(policy) + carbon_warnings(policy)
    return Checked(policy, [], _ordered([doc.issue(loc, message) for loc, message in found]))


def _ordered(issues: list[Issue]) -> list[Issue]:
    unique = {(i.line, i.column, i.path, i.message): i for i in issues}
    return sorted(unique.values(), key=lambda i: (i.line, i.column))


# --- YAML positions --------------------------------------------------------------------------


@dataclass(slots=True)
class _Document:
    """A parsed policy: its data, its YAML nodes, and the nodes at each location of the data."""

    source: str
    root: yaml.Node
    data: Any
    # location (keys as loaded, list indexes) -> (key node, value node)
    nodes: dict[Loc, tuple[yaml.Node | None, yaml.Node]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str, source: str) -> _Document | Issue:
        try:
            loader = yaml.SafeLoader(text)
            try:
                root = loader.get_single_node()
                data = loader.construct_document(root) if root is not None else None
            finally:
                loader.dispose()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
            problem = " ".join(p for p in (exc.context, exc.problem) if p)
            return Issue(source, line, col, "", f"not valid YAML: {problem}")
        except yaml.YAMLError as exc:
            return Issue(source, 1, 1, "", f"not valid YAML: {exc}")
        if root is None or data is None:
            return Issue(source, 1, 1, "", "the file is empty; start from policies/default.yaml")
        doc = cls(source, root, data)
        doc._index(root, (), None, yaml.constructor.SafeConstructor())
        return doc

    def _index(
        self,
        node: yaml.Node,
        loc: Loc,
        key: yaml.Node | None,
        keys: yaml.constructor.SafeConstructor,
    ) -> None:
        self.nodes[loc] = (key, node)
        if isinstance(node, yaml.MappingNode):
            # merge keys are already flattened into node.value; for duplicates the last one wins,
            # as it does in the data
            for key_node, value_node in node.value:
                step = _scalar(key_node, keys)
                if step is not None:
                    self._index(value_node, (*loc, step), key_node, keys)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._index(item, (*loc, i), None, keys)

    def find(self, loc: Loc) -> tuple[Loc, yaml.Node | None, yaml.Node]:
        """The longest prefix of ``loc`` that the file has, with its key and value nodes."""
        for depth in range(len(loc), -1, -1):
            hit = self.nodes.get(loc[:depth])
            if hit is not None:
                return loc[:depth], hit[0], hit[1]
        return (), None, self.root

    def path(self, loc: Loc) -> str:
        """``loc`` as the user wrote it: a key YAML read as a boolean shows as written (``NO``)."""
        steps: list[str | int] = []
        for depth, step in enumerate(loc, 1):
            key = self.nodes.get(loc[:depth], (None, None))[0]
            if not isinstance(step, str) and isinstance(key, yaml.ScalarNode):
                steps.append(str(key.value))
            else:
                steps.append(step if isinstance(step, str | int) else str(step))
        return path_text(tuple(steps))

    def issue(self, loc: Loc, message: str, *, at_key: bool = False) -> Issue:
        """An issue at ``loc`` (at its key when ``at_key``, e.g. an unknown or misspelt key)."""
        found, key_node, node = self.find(loc)
        target = key_node if at_key and key_node is not None and found == loc else node
        mark = target.start_mark
        return Issue(self.source, mark.line + 1, mark.column + 1, self.path(loc), message)


def _scalar(node: yaml.Node, constructor: yaml.constructor.SafeConstructor) -> Any:
    """The value YAML gives a scalar (``NO`` -> False, ``1`` -> 1) if hashable, else None."""
    if not isinstance(node, yaml.ScalarNode):
        return None
    try:
        value = constructor.construct_object(node)
    except yaml.YAMLError:
        return None
    return value if isinstance(value, typing.Hashable) else None


def _duplicates(node: yaml.Node, source: str, path: Loc = ()) -> list[Issue]:
    out: list[Issue] = []
    if isinstance(node, yaml.MappingNode):
        first: dict[object, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is not None and key in first:
                what = "class name" if path == ("classes",) else "key"
                prev = first[key].start_mark.line + 1
                out.append(
                    Issue(
                        source,
                        key_node.start_mark.line + 1,
                        key_node.start_mark.column + 1,
                        path_text((*path, key)),
                        f"duplicate {what} {key!r} (first defined on line {prev}); "
                        "merge the two or rename one",
                    )
                )
            elif key is not None:
                first[key] = key_node
            out.extend(_duplicates(value_node, source, (*path, key if key is not None else "?")))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out.extend(_duplicates(item, source, (*path, i)))
    return out


# --- pydantic errors -> issues ---------------------------------------------------------------


def _issue(err: ErrorDetails, doc: _Document) -> Issue:
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
        hint = _yaml11_hint(key_node if at_key else node, key=at_key)
        if hint:
            message = f"must be a string, but {hint}"
    return doc.issue(loc, message, at_key=at_key)


_YAML11 = {
    "bool": "YAML 1.1 reads the unquoted {what} {text} as the boolean {value}",
    "null": "YAML reads the unquoted {what} {text} as null (no value)",
    "int": "YAML reads the unquoted {what} {text} as a number",
    "float": "YAML reads the unquoted {what} {text} as a number",
}


def _yaml11_hint(node: yaml.Node | None, *, key: bool) -> str:
    """``YAML 1.1 reads the unquoted key NO as the boolean false; quote it as "NO"`` when a plain
    scalar (Norway's ``NO``, ``yes``, ``off``, ``~``, ``1.10``) was read as something other than
    the string it looks like."""
    if not isinstance(node, yaml.ScalarNode) or node.style is not None:
        return ""
    kind = node.tag.rsplit(":", 1)[-1]
    if kind not in _YAML11:
        return ""
    what = "key" if key else "value"
    if kind == "null" and not node.value:
        return f"the {what} is empty, which YAML reads as null; write the string"
    value = _scalar(node, yaml.constructor.SafeConstructor())
    said = _YAML11[kind].format(
        what=what, text=node.value, value=str(value).lower() if kind == "bool" else value
    )
    return f'{said}; quote it as "{node.value}"'


def _is_internal(step: str) -> bool:
    # pydantic adds steps such as 'function-after[...]', '[key]' or union tags to some locations
    return "[" in step or step in ("function-after", "function-before", "function-plain")


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


# --- warnings (valid, but probably not what was meant) ---------------------------------------

KNOWN_OWNER_KINDS = (
    "Job", "CronJob", "JobSet", "Deployment", "ReplicaSet", "StatefulSet", "DaemonSet",
    "PyTorchJob", "TFJob", "MPIJob", "JAXJob", "XGBoostJob", "PaddleJob", "KubeflowJob",
    "TrainJob", "RayJob", "RayCluster", "LeaderWorkerSet", "Workflow", "SparkApplication",
    "Notebook", "InferenceService",
)  # fmt: skip


def _warnings(policy: Policy) -> list[Problem]:
    from carbon.zones import builtin_annual_means  # data tables: loaded only when linting

    out: list[Problem] = []
    known_zones = set(builtin_annual_means()) | set(policy.carbon.static)
    known_zones |= set(policy.carbon.zones.values())
    for name, cls in policy.classes.items():
        base: Loc = ("classes", name)
        for i, kind in enumerate(cls.selector.ownerKinds):
            if kind not in KNOWN_OWNER_KINDS:
                hint = did_you_mean(kind, list(KNOWN_OWNER_KINDS))
                out.append(
                    (
                        (*base, "selector", "ownerKinds", i),
                        f"owner kind {kind!r} is not a kind lowcarb knows{hint} (kinds are "
                        "case-sensitive; a custom controller's kind is fine)",
                    )
                )
        if name != "default" and cls.selector.is_empty():
            out.append(
                (
                    base,
                    f"class {name!r} has no selector: only pods annotated lowcarb.dev/class: "
                    f"{name} get it",
                )
            )
        for i, pattern in enumerate(cls.constraints.allowedZones):
            if not any(fnmatch.fnmatchcase(z, pattern) for z in known_zones):
                out.append(
                    (
                        (*base, "constraints", "allowedZones", i),
                        f"zone pattern {pattern!r} matches no zone of the built-in table or of "
                        "carbon.static / carbon.zones; zone keys look like 'DE', 'SE-SE3', "
                        "'US-CAL-CISO'",
                    )
                )
    return out
