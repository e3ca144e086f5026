"""Every ``lowcarb.dev/`` name is defined once, in ``scheduler/names.py`` (the decision annotation
in ``carbon``, which may not import ``scheduler``), and the code uses the constants."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from carbon.accounting import records
from scheduler import names

ROOT = Path(__file__).resolve().parent.parent
NAME = re.compile(r"^lowcarb\.dev/[a-z0-9-]+$")
#: where a literal name may appear: its one definition (and the policy's API version)
ALLOWED = {
    ("scheduler/names.py", None),
    ("carbon/accounting/records.py", records.DECISION_ANNOTATION),
    ("scheduler/policy/model.py", "lowcarb.dev/v2"),  # apiVersion of the policy document
    ("scheduler/policy/migrate.py", "lowcarb.dev/v1"),  # the removed one, which it migrates
}


def literal_names(path: Path) -> list[tuple[int, str]]:
    """String constants that are a lowcarb.dev name, docstrings excluded."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and NAME.match(node.value)
        and id(node) not in docstrings
    ]


def test_no_lowcarb_name_is_spelled_outside_its_definition() -> None:
    found = []
    for package in ("scheduler", "carbon"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for line, value in literal_names(path):
                if (rel, None) not in ALLOWED and (rel, value) not in ALLOWED:
                    found.append(f"{rel}:{line}: {value!r}")
    assert not found, "use scheduler.names instead of spelling these:\n" + "\n".join(found)


def test_each_name_is_defined_once_and_the_decision_is_carbons() -> None:
    defined = {
        k: v for k, v in vars(names).items() if k.isupper() and isinstance(v, str) and k != "PREFIX"
    }
    assert len(set(defined.values())) == len(defined), defined
    assert all(v.startswith(names.PREFIX) for v in defined.values())
    assert set(names.ANNOTATIONS) == {v for k, v in defined.items() if k.startswith("ANN_")}
    assert names.ANN_DECISION is records.DECISION_ANNOTATION
