"""Every ``lowcarb`` help screen fits 80 columns and shows no typer ``<type>`` marker.

Walks the real command tree (root, every group, every command) and renders each ``--help`` with
``COLUMNS=80``: no ``<bool>``/``<str>``-style marker, no line wider than 80 characters, and a flag
such as ``--help`` shows no type at all.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.core import TyperGroup
from typer.testing import CliRunner

from scheduler.cli.main import app

MARKER = re.compile(r"<(bool|str|int|float|path|text|list\[[^\]]*\])[^>]*>", re.IGNORECASE)


def _paths() -> list[list[str]]:
    root = typer.main.get_command(app)
    out: list[list[str]] = [[]]

    def walk(cmd: Any, path: list[str]) -> None:
        if isinstance(cmd, TyperGroup):
            ctx = typer.Context(cmd)
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                assert sub is not None
                out.append([*path, name])
                walk(sub, [*path, name])

    walk(root, [])
    return out


PATHS = _paths()


def test_the_tree_is_walked() -> None:
    names = {" ".join(p) for p in PATHS}
    assert {"", "simulate", "gates plan", "carbon show", "policy validate", "report"} <= names


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "lowcarb")
def test_help_fits_80_columns_without_type_markers(path: list[str]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "Usage" in text
    assert not MARKER.search(text), MARKER.search(text)
    wide = [line for line in text.splitlines() if len(line) > 80]
    assert not wide, wide
    help_line = next(line for line in text.splitlines() if "--help" in line)
    # the flag's row: its name, then its description, no type between them
    assert re.search(r"--help\s+Show this message", help_line), help_line


def _script() -> list[str]:
    """The installed console script: completion keys on its name, as the shell runs it."""
    return [str(Path(sys.executable).parent / "lowcarb")]


def _complete(words: str) -> list[str]:
    """What bash completion offers for ``words`` (the installed command, as the shell runs it)."""
    env = {
        **os.environ,
        "_LOWCARB_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
    }
    out = subprocess.run(_script(), env=env, capture_output=True, timeout=60, check=True)
    return out.stdout.decode().split()


def test_shell_completion_is_enabled_and_completes_commands_options_and_choices() -> None:
    # the script the README installs, for a named shell (--show-completion detects the shell
    # from the parent process, which a test runner's may not be)
    env = {**os.environ, "_LOWCARB_COMPLETE": "source_bash"}
    script = subprocess.run(_script(), env=env, capture_output=True, timeout=60, check=True)
    assert b"_lowcarb_completion()" in script.stdout and b"complete -o default" in script.stdout
    assert _complete("lowcarb gat") == ["gates"]
    assert "--output" in _complete("lowcarb gates plan --out")
    assert _complete("lowcarb carbon show -o ") == ["table", "json", "csv"]
