"""The accounting package keeps its shape: every SQL statement in store.py, small modules."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import carbon.accounting

PACKAGE = Path(carbon.accounting.__file__).parent
MODULES = sorted(PACKAGE.glob("*.py"))
STATEMENT = re.compile(
    r"^\s*(SELECT\s|INSERT\s+(OR\s+\w+\s+)?INTO\s|UPDATE\s+\w+\s+SET\s|DELETE\s+FROM\s|"
    r"CREATE\s+(TABLE|INDEX|TRIGGER|OR\s+REPLACE)|PRAGMA\s|BEGIN\b|COMMIT\b|ROLLBACK\b|SET\s)",
    re.IGNORECASE,
)


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, text) of the string literals that are not docstrings (f-strings: their head)."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    parts: list[ast.Constant] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):  # an f-string: its literal head counts
            head = node.values[0] if node.values else None
            if isinstance(head, ast.Constant) and isinstance(head.value, str):
                parts.append(head)
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
        ):
            parts.append(node)
    return [(c.lineno, c.value) for c in parts if isinstance(c.value, str)]


def test_the_detector_sees_sql() -> None:
    found = [text for _, text in _strings(ast.parse((PACKAGE / "store.py").read_text()))]
    assert sum(bool(STATEMENT.match(v)) for v in found) >= 10


@pytest.mark.parametrize("path", [p for p in MODULES if p.name != "store.py"], ids=lambda p: p.name)
def test_sql_lives_in_store_only(path: Path) -> None:
    sql = [
        f"{path.name}:{line}: {text[:60]!r}"
        for line, text in _strings(ast.parse(path.read_text()))
        if STATEMENT.match(text)
    ]
    assert not sql, "SQL outside carbon/accounting/store.py:\n" + "\n".join(sql)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_modules_are_small_and_say_their_role(path: Path) -> None:
    text = path.read_text()
    assert len(text.splitlines()) <= 450, f"{path.name}: split it (one job per module)"
    assert ast.get_docstring(ast.parse(text)), f"{path.name}: say the module's role in a docstring"
