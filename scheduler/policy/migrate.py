"""From the class-weights model (``lowcarb.dev/v1``) to the one cost model (``lowcarb.dev/v2``).

v2 removed each class's ``weights`` (a weighted sum of range-normalised terms) and
``carbonNormalization`` (which only shaped that sum): every node is priced in one currency
(``prices:``, with defaults), and a class may carry its own ``prices:`` over the policy's.

:func:`migration_issues` is what the loader says about a v1 file (one error at ``apiVersion``
naming the lines to delete and the command that does it) or about a v2 file that still has those
keys (one error per key); :func:`superseded` tells the loader which of pydantic's errors those
messages replace. :func:`migrate_text` is ``lowcarb policy migrate``: a line-based rewrite that
keeps every comment: ``apiVersion`` set to v2, the ``weights`` and ``carbonNormalization`` lines of
each class removed. A class whose weights left the carbon term out was carbon-blind; it gets
``prices: {carbonPerTonne: 0}`` in their place, and one that left ``gpu_fit`` out gets
``strandedGpuHour: 0`` (v2 always runs both terms).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from carbon.checks import Loc
from scheduler.policy.model import API_VERSION
from scheduler.policy.positions import Document, Issue

V1 = "lowcarb.dev/v1"
V2 = API_VERSION
REMOVED = ("weights", "carbonNormalization")


class MigrateError(ValueError):
    """A file the line-based rewrite cannot handle; the message names the line and the fix."""


def _removed_keys(doc: Document) -> list[tuple[str, str]]:
    """(class name, key) of every removed key in the document, in file order."""
    classes = doc.data.get("classes") if isinstance(doc.data, dict) else None
    out = []
    for name, cls in classes.items() if isinstance(classes, dict) else ():
        if isinstance(cls, dict):
            out += [(str(name), key) for key in REMOVED if key in cls]
    return out


def _command(source: str) -> str:
    name = source if source and not source.startswith("<") else "FILE"
    return f"lowcarb policy migrate {name}"


def migration_issues(doc: Document) -> list[Issue]:
    """The v1 error (at ``apiVersion``) or one error per removed key of a v2 file."""
    data = doc.data if isinstance(doc.data, dict) else {}
    removed = _removed_keys(doc)
    if data.get("apiVersion") == V1:
        lines = [doc.issue(("classes", c, k), "", at_key=True).line for c, k in removed]
        plain = all(k == "weights" for _, k in removed)
        what = "weights" if plain else "weights and carbonNormalization"
        where = ""
        if lines:
            label = "line" if len(lines) == 1 else "lines"
            where = f" ({label} {', '.join(map(str, lines))})"
        message = (
            f"{V1} is the class-weights model, removed in v2; run '{_command(doc.source)}' "
            f"(writes the v2 file) or set apiVersion: {V2} and delete each class's {what}{where}"
        )
        return [doc.issue(("apiVersion",), message)]
    out = []
    for cls, key in removed:
        if key == "weights":
            message = (
                f"class weights were removed in {V2}: every node is priced in one currency "
                "(prices:); delete this key (a class may set its own prices:, e.g. "
                f"carbonPerTonne: 0 for a carbon-blind class) or run '{_command(doc.source)}'"
            )
        else:
            message = (
                f"carbonNormalization was removed in {V2} (it only shaped the weighted sum); "
                f"delete this key or run '{_command(doc.source)}'"
            )
        out.append(doc.issue(("classes", cls, key), message, at_key=True))
    return out


def superseded(loc: Loc, data: object) -> bool:
    """True for a pydantic error at ``loc`` that :func:`migration_issues` already explains."""
    if len(loc) == 3 and loc[0] == "classes" and loc[2] in REMOVED:
        return True
    return loc == ("apiVersion",) and isinstance(data, dict) and data.get("apiVersion") == V1


@dataclass(slots=True)
class Migrated:
    """The rewritten text and what changed (for the command's summary)."""

    text: str
    changed: bool
    notes: list[str] = field(default_factory=list)


def migrate_text(text: str, source: str = "<policy>") -> Migrated:
    """``text`` rewritten to v2, comments kept (raises :class:`MigrateError` where it cannot)."""
    doc = Document.parse(text, source)
    if isinstance(doc, Issue):
        raise MigrateError(f"{doc}: fix the YAML first")
    data = doc.data if isinstance(doc.data, dict) else {}
    lines = text.splitlines(keepends=True)
    notes: list[str] = []
    drop: set[int] = set()  # 0-based lines to delete
    insert: dict[int, str] = {}  # 0-based line -> replacement text for a removed weights line
    version = data.get("apiVersion")
    if version not in (None, V1, V2):
        raise MigrateError(f"{source}: apiVersion {version!r} is neither {V1} nor {V2}")
    if version == V1:
        _, version_key, node = doc.find(("apiVersion",))
        i = node.start_mark.line
        if version_key is None or version_key.start_mark.line != i or node.end_mark.line != i:
            raise MigrateError(f"{source}:{i + 1}: write 'apiVersion: {V1}' on one line first")
        lines[i] = lines[i][: node.start_mark.column] + V2 + lines[i][node.end_mark.column :]
        notes.append(f"line {i + 1}: apiVersion {V1} -> {V2}")
    classes = data.get("classes")
    for name, key in _removed_keys(doc):
        found, found_key, value = doc.find(("classes", name, key))
        assert found_key is not None and found == ("classes", name, key)
        key_node: yaml.Node = found_key
        first = key_node.start_mark.line
        last = _last_line(value)
        if lines[first][: key_node.start_mark.column].strip() or _shares_line(value, lines, last):
            raise MigrateError(
                f"{source}:{first + 1}: class {name!r} writes {key} inline with other keys; put "
                f"it on its own line (or delete it by hand) and run the command again"
            )
        drop.update(range(first, last + 1))
        notes.append(f"line {first + 1}: removed classes.{name}.{key}")
        cls = classes[name] if isinstance(classes, dict) else {}
        weights = cls.get("weights") if key == "weights" else None
        if isinstance(weights, dict) and "prices" not in cls:
            blind = {}
            if not _weighted(weights, "carbon"):
                blind["carbonPerTonne"] = 0
            if not _weighted(weights, "gpu_fit"):
                blind["strandedGpuHour"] = 0
            if blind:
                indent = " " * key_node.start_mark.column
                body = ", ".join(f"{k}: {v}" for k, v in blind.items())
                insert[first] = f"{indent}prices: {{{body}}}   # was weights: {_flow(weights)}\n"
                notes.append(f"line {first + 1}: classes.{name}.prices: {{{body}}} (the weights "
                             "left those terms out)")  # fmt: skip
            if "least_allocated" in weights:
                notes.append(f"classes.{name}: least_allocated is not priced in v2 "
                             "(kube-scheduler's NodeResourcesFit scores it)")  # fmt: skip
    for name, cls in classes.items() if isinstance(classes, dict) else ():
        if isinstance(cls, dict) and cls and set(cls) <= set(REMOVED):  # nothing left: {}
            _, class_key, _ = doc.find(("classes", name))
            if class_key is not None:
                i, col = class_key.end_mark.line, class_key.end_mark.column
                if lines[i][col : col + 1] == ":":
                    lines[i] = lines[i][: col + 1] + " {}" + lines[i][col + 1 :]
    if not drop and version != V1:
        return Migrated(text, False, [f"{source}: already {V2}; nothing to change"])
    out = []
    for i, line in enumerate(lines):
        if i in insert:
            out.append(insert[i])
        elif i not in drop:
            out.append(line)
    return Migrated("".join(out), True, notes)


def _weighted(weights: dict[object, object], term: str) -> bool:
    """v1 scored every term its weights named (a weight of 0 too, with prices)."""
    return term in weights


def _last_line(node: yaml.Node) -> int:
    """0-based last line of ``node``'s text (a block collection ends at its last item)."""
    if isinstance(node, yaml.MappingNode) and node.flow_style is not True and node.value:
        return _last_line(node.value[-1][1])
    if isinstance(node, yaml.SequenceNode) and node.flow_style is not True and node.value:
        return _last_line(node.value[-1])
    return node.end_mark.line - (1 if node.end_mark.column == 0 else 0)


def _flow(weights: dict[object, object]) -> str:
    return yaml.safe_dump(weights, default_flow_style=True, sort_keys=False).strip()


def _shares_line(value: yaml.Node, lines: list[str], last: int) -> bool:
    """True when something other than the value (and a comment) follows it on its last line."""
    if isinstance(value, yaml.CollectionNode) and value.flow_style is not True:
        return False  # a block collection ends its own lines
    if value.end_mark.column == 0 or value.end_mark.line != last:
        return False
    rest = lines[last][value.end_mark.column :].strip()
    return bool(rest) and not rest.startswith("#")
