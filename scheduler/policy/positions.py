"""Policy YAML with positions: each value's line and column, and problems found in the YAML itself.

:class:`Document` composes the text into YAML nodes first (so each value keeps its position) and
indexes them by location (the keys and list indexes that lead to a value), so a problem found later
at a location of the data becomes an :class:`Issue` at file:line:column. The YAML-level checks live
here too: duplicate keys (PyYAML would silently keep the last one) and the YAML 1.1 hint for a plain
scalar read as something other than the string it looks like (``NO``, ``yes``, ``~``, ``1.10``).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Any

import yaml

from carbon.checks import Loc, path_text


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


@dataclass(slots=True)
class Document:
    """A parsed policy: its data, its YAML nodes, and the nodes at each location of the data."""

    source: str
    root: yaml.Node
    data: Any
    # location (keys as loaded, list indexes) -> (key node, value node)
    nodes: dict[Loc, tuple[yaml.Node | None, yaml.Node]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str, source: str) -> Document | Issue:
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
                step = scalar(key_node, keys)
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


def scalar(node: yaml.Node, constructor: yaml.constructor.SafeConstructor) -> Any:
    """The value YAML gives a scalar (``NO`` -> False, ``1`` -> 1) if hashable, else None."""
    if not isinstance(node, yaml.ScalarNode):
        return None
    try:
        value = constructor.construct_object(node)
    except yaml.YAMLError:
        return None
    return value if isinstance(value, typing.Hashable) else None


def duplicates(node: yaml.Node, source: str, path: Loc = ()) -> list[Issue]:
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
            out.extend(duplicates(value_node, source, (*path, key if key is not None else "?")))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out.extend(duplicates(item, source, (*path, i)))
    return out


_YAML11 = {
    "bool": "YAML 1.1 reads the unquoted {what} {text} as the boolean {value}",
    "null": "YAML reads the unquoted {what} {text} as null (no value)",
    "int": "YAML reads the unquoted {what} {text} as a number",
    "float": "YAML reads the unquoted {what} {text} as a number",
}


def yaml11_hint(node: yaml.Node | None, *, key: bool) -> str:
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
    value = scalar(node, yaml.constructor.SafeConstructor())
    said = _YAML11[kind].format(
        what=what, text=node.value, value=str(value).lower() if kind == "bool" else value
    )
    return f'{said}; quote it as "{node.value}"'
