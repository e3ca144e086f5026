"""Policy validation with every error at once, each with file, line, column and field path.

YAML is composed into nodes first (so each value keeps its position), duplicate keys are caught
there (PyYAML would silently keep the last one), then the data is validated by the pydantic
models of :mod:`scheduler.policy`. Each pydantic error is mapped back to the YAML node at its
path and rewritten in plain words with a hint where one helps (``did you mean 'matchLabels'?``,
``must be >= 0``).
"""

from __future__ import annotations

import difflib
import fnmatch
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from scheduler.policy import Policy

Loc = tuple[str | int, ...]


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
    """The policy (None when invalid) and every issue found in ``text``."""
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
        return None, [Issue(source, line, col, "", f"not valid YAML: {problem}")]
    except yaml.YAMLError as exc:
        return None, [Issue(source, 1, 1, "", f"not valid YAML: {exc}")]
    if root is None or data is None:
        return None, [
            Issue(source, 1, 1, "", "the file is empty; start from policies/default.yaml")
        ]
    issues = _duplicates(root, source)
    if not isinstance(data, dict):
        kind = type(data).__name__
        issues.append(
            Issue(source, 1, 1, "", f"expected a mapping with apiVersion, kind, ... (got {kind})")
        )
        return None, issues
    policy: Policy | None = None
    seen: set[tuple[int, int, str]] = set()
    pruned: list[Loc] = []
    for _ in range(_PASSES):
        try:
            policy = Policy.model_validate(data)
            break
        except ValidationError as exc:
            policy = None
            errors = [
                e
                for e in exc.errors(include_url=False)
                if not (pruned and e["type"] == "missing" and _under(e["loc"], pruned))
            ]
        for err in errors:
            issue = _issue(err, root, source)
            key = (issue.line, issue.column, issue.message)
            if key not in seen:
                seen.add(key)
                issues.append(issue)
        # Model-level checks run only when every field of that model is valid: drop the bad
        # values and validate again, so one wrong field does not hide the next problem.
        progressed = False
        for err in errors:
            if _prune(data, err["loc"]):
                pruned.append(tuple(err["loc"]))
                progressed = True
        if not progressed:
            break
    if issues:
        issues.sort(key=lambda i: (i.line, i.column))
        return None, issues
    return policy, []


_PASSES = 4


def _under(loc: tuple[str | int, ...], pruned: list[Loc]) -> bool:
    return any(loc[: len(p)] == p or p[: len(loc)] == loc for p in pruned)


def _prune(data: Any, loc: tuple[str | int, ...]) -> bool:
    """Delete the value at the deepest mapping key along ``loc``; True if something went."""
    parent: Any = None
    key: str | int | None = None
    node = data
    for step in loc:
        if isinstance(node, dict) and step in node:
            parent, key, node = node, step, node[step]
        elif isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node):
            node = node[step]
        else:
            break
    if isinstance(parent, dict) and key is not None:
        del parent[key]
        return True
    return False


# --- YAML positions --------------------------------------------------------------------------


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
                        _path((*path, key)),
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


def _find(root: yaml.Node, loc: Loc) -> tuple[yaml.Node, yaml.Node | None, int]:
    """The deepest node along ``loc``, the key node of its last step, and the depth reached."""
    node, key_node, depth = root, None, 0
    for step in loc:
        if isinstance(node, yaml.MappingNode):
            # the last of duplicate keys is the one PyYAML keeps
            hits = [
                (k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == step
            ]
            hit = hits[-1] if hits else None
            if hit is None:
                break
            key_node, node = hit
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int):
            if not 0 <= step < len(node.value):
                break
            key_node, node = None, node.value[step]
        else:
            break
        depth += 1
    return node, key_node, depth


def _path(loc: Loc) -> str:
    out = ""
    for step in loc:
        if isinstance(step, int):
            out += f"[{step}]"
        else:
            out += ("." if out else "") + str(step)
    return out


_EMBEDDED_PATH = re.compile(
    r"^((?:[A-Za-z_][\w-]*)(?:\.[A-Za-z_][\w-]*|\[\d+\])*)\s*:\s+(.*)$", re.S
)


_UNKNOWN_CHOICE = re.compile(r"unknown [\w ]+? '([^']+)'; use one of \[([^\]]*)\]")


def _loc_of(text: str) -> Loc:
    steps: list[str | int] = []
    for part in re.finditer(r"([A-Za-z_][\w-]*)|\[(\d+)\]", text):
        steps.append(int(part.group(2)) if part.group(2) is not None else part.group(1))
    return tuple(steps)


# --- pydantic errors -> issues ---------------------------------------------------------------


def _issue(err: ErrorDetails, root: yaml.Node, source: str) -> Issue:
    loc: Loc = tuple(s for s in err["loc"] if isinstance(s, int) or not _is_internal(s))
    message = _message(err, loc)
    # model-level validators name the exact field in their message ("carbon.fallback[0]: ...")
    embedded = _EMBEDDED_PATH.match(message)
    if embedded is not None:
        inner = _loc_of(embedded.group(1))
        if inner[: len(loc)] == loc or (loc and inner[:1] == loc[:1]):
            loc, message = inner, embedded.group(2)
        elif loc and inner and _find(root, (*loc, *inner))[2] == len(loc) + len(inner):
            loc, message = (*loc, *inner), embedded.group(2)
    unknown = _UNKNOWN_CHOICE.search(message)
    if unknown is not None and "did you mean" not in message:
        options = re.findall(r"'([^']*)'", unknown.group(2))
        hint = _did_you_mean(unknown.group(1), options)
        if hint:
            message = f"{message}{hint}"
    node, key_node, depth = _find(root, loc)
    target = node
    if err["type"] == "extra_forbidden" and key_node is not None and depth == len(loc):
        target = key_node
    mark = target.start_mark
    # an unknown key belongs to the mapping that holds it: "classes.x.selector: unknown key ..."
    where = loc[:-1] if err["type"] == "extra_forbidden" else loc
    return Issue(source, mark.line + 1, mark.column + 1, _path(where), message)


def _is_internal(step: str) -> bool:
    # pydantic adds steps such as 'function-after[...]' or union tags to some locations
    return "[" in step or step in ("function-after", "function-before", "function-plain")


def _message(err: ErrorDetails, loc: Loc) -> str:
    kind = err["type"]
    ctx: dict[str, Any] = dict(err.get("ctx") or {})
    value = err.get("input")
    got = _short(value)
    if kind == "extra_forbidden":
        key = loc[-1] if loc else "?"
        allowed = _allowed_keys(loc[:-1])
        hint = _did_you_mean(str(key), allowed)
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
        hint = _did_you_mean(str(value), options) if isinstance(value, str) else ""
        return f"must be one of {expected} (got {got}){hint}"
    if kind in ("float_parsing", "float_type", "int_parsing", "int_type"):
        return f"must be a number (got {got})"
    if kind in ("bool_parsing", "bool_type"):
        return f"must be true or false (got {got})"
    if kind in ("string_type",):
        return f"must be a string (got {got})"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be a mapping of keys to values (got {type(value).__name__} {got})"
    if kind in ("list_type", "tuple_type"):
        return f"must be a list (got {type(value).__name__} {got})"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_pattern_mismatch":
        return f"{got} does not have the expected form ({ctx.get('pattern')})"
    msg = err["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    return msg


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _did_you_mean(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if not close:
        lowered = {o.lower(): o for o in options}
        if word.lower() in lowered:
            close = [lowered[word.lower()]]
    return f", did you mean {close[0]!r}?" if close else ""


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


def lint_text(text: str, source: str = "<policy>") -> list[Issue]:
    """Warnings for a valid policy: owner kinds that look like typos, classes no selector can
    reach, residency zones no carbon source knows, and the carbon-coverage warnings of
    :mod:`scheduler.carbon_lint`. Empty for an invalid policy."""
    from scheduler.carbon_lint import carbon_warnings  # data tables: loaded only when linting

    policy, issues = validate_text(text, source)
    if policy is None or issues:
        return []
    root = yaml.SafeLoader(text).get_single_node()
    assert root is not None
    found = _warnings(policy) + carbon_warnings(policy)
    return [_at(root, source, loc, message) for loc, message in found]


def _at(root: yaml.Node, source: str, loc: Loc, message: str) -> Issue:
    node, _, _ = _find(root, loc)
    mark = node.start_mark
    return Issue(source, mark.line + 1, mark.column + 1, _path(loc), message)


def _warnings(policy: Policy) -> list[tuple[Loc, str]]:
    from carbon.zones import builtin_annual_means  # data tables: loaded only when linting

    out: list[tuple[Loc, str]] = []
    known_zones = set(builtin_annual_means()) | set(policy.carbon.static)
    known_zones |= set(policy.carbon.zones.values())
    for name, cls in policy.classes.items():
        base: Loc = ("classes", name)
        for i, kind in enumerate(cls.selector.ownerKinds):
            if kind not in KNOWN_OWNER_KINDS:
                hint = _did_you_mean(kind, list(KNOWN_OWNER_KINDS))
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
