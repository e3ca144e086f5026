"""The version is written once, in pyproject.toml; the package, the CLI and the API client's
User-Agent read it from the installed distribution's metadata."""

from __future__ import annotations

import tomllib
from pathlib import Path

from typer.testing import CliRunner

from scheduler import __version__
from scheduler.cli.main import app
from scheduler.kube.client import USER_AGENT

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_the_version_is_pyprojects() -> None:
    written = tomllib.loads(PYPROJECT.read_text())["project"]["version"]
    assert __version__ == written
    assert f"lowcarb/{written}" == USER_AGENT
    result = CliRunner().invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.output == f"lowcarb {written}\n"
