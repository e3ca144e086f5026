"""deploy/Dockerfile, checked statically (no container engine here): stages, user, entrypoint."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from tests.support.deploy import BASE, DEPLOY, REPO, load_yaml_documents

DOCKERFILE = DEPLOY / "Dockerfile"

Instruction = dict[str, str]


@pytest.fixture(scope="module")
def parser() -> DockerfileParser:
    parsed = DockerfileParser(path=str(DOCKERFILE))
    parsed.content = DOCKERFILE.read_text(encoding="utf-8")
    return parsed


@pytest.fixture(scope="module")
def stages(parser: DockerfileParser) -> list[list[Instruction]]:
    """Instructions grouped by build stage (each starts with FROM)."""
    grouped: list[list[Instruction]] = []
    for instruction in parser.structure:
        if instruction["instruction"] == "FROM":
            grouped.append([])
        if grouped:
            grouped[-1].append(instruction)
    return grouped


def values(stage: list[Instruction], name: str) -> list[str]:
    return [i["value"] for i in stage if i["instruction"] == name]


def copy_sources(stage: list[Instruction]) -> list[str]:
    """Build-context sources of the stage's COPY instructions (not --from=...)."""
    sources: list[str] = []
    for value in values(stage, "COPY"):
        words = value.split()
        if any(w.startswith("--from") for w in words):
            continue
        sources.extend(w for w in words[:-1] if not w.startswith("--"))
    return sources


def test_multi_stage_on_slim_python_311_or_newer(
    parser: DockerfileParser, stages: list[list[Instruction]]
) -> None:
    assert len(stages) >= 2, "build and runtime stages are expected"
    bases = [values(stage, "FROM")[0].split()[0] for stage in stages]
    global_args = {}
    for instruction in parser.structure:
        if instruction["instruction"] == "FROM":
            break
        if instruction["instruction"] == "ARG":
            key, _, default = instruction["value"].partition("=")
            global_args[key] = default
    images = {b.replace("${PYTHON_IMAGE}", global_args["PYTHON_IMAGE"]) for b in bases}
    for image in images:
        name, _, tag = image.partition(":")
        assert name == "python" and "slim" in tag, image
        major, minor = (int(x) for x in tag.split("-")[0].split(".")[:2])
        assert (major, minor) >= (3, 11), image
    runtime = stages[-1]
    assert any("--from=build" in v for v in values(runtime, "COPY"))
    assert not copy_sources(runtime), "the runtime stage must copy only from the build stage"


def test_runtime_user_is_unprivileged_and_matches_the_pod(
    stages: list[list[Instruction]],
) -> None:
    users = values(stages[-1], "USER")
    assert users, "the runtime stage must set USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, "numeric non-root uid (runAsNonRoot needs it)"
    assert gid.isdigit() and int(gid) != 0
    (deployment,) = load_yaml_documents(BASE / "deployment.yaml")
    context = deployment["spec"]["template"]["spec"]["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"]) == (int(uid), int(gid))


def test_entrypoint_is_lowcarb_serve(stages: list[list[Instruction]]) -> None:
    (entrypoint,) = values(stages[-1], "ENTRYPOINT")
    assert entrypoint.strip() == '["lowcarb", "serve"]', "exec form, so signals reach lowcarb"


def test_read_only_root_file_system_friendly(parser: DockerfileParser) -> None:
    env = parser.envs
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"
    assert env.get("HOME", "").startswith("/tmp")
    assert env.get("MPLCONFIGDIR", "").startswith("/tmp")
    assert "compileall" in parser.content, "bytecode must be compiled at build time"


def test_build_context_is_a_clean_clone(stages: list[list[Instruction]]) -> None:
    sources = copy_sources(stages[0])
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    packages = ["scheduler", "carbon"]
    assert {"pyproject.toml", project["readme"], *packages, "policies"} <= set(sources)
    for source in sources:
        assert not any(ch in source for ch in "*?["), f"explicit paths only: {source}"
        ignored = subprocess.run(
            ["git", "check-ignore", "-q", source], cwd=REPO, check=False, capture_output=True
        )
        assert ignored.returncode == 1, f"{source} is git-ignored: a clean clone lacks it"
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").split()
    assert "**/.venv" in ignore and ".git" in ignore


def test_build_stage_installs_from_the_copied_files(
    stages: list[list[Instruction]], tmp_path: Path
) -> None:
    """What the build stage's `pip install .` sees is enough to build lowcarb.

    Builds an sdist (with its metadata) through setuptools' PEP 517 backend, without network
    or build isolation, from a directory holding only what the Dockerfile copies.
    """
    sources = copy_sources(stages[0])
    missing = [s for s in sources if not (REPO / s).exists()]
    assert not missing, f"COPY sources missing from the repository: {missing}"
    context = tmp_path / "src"
    context.mkdir()
    for source in sources:
        origin = REPO / source
        if origin.is_dir():
            shutil.copytree(origin, context / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, context / source)
    out = tmp_path / "out"
    out.mkdir()
    script = "import sys; from setuptools import build_meta as b; print(b.build_sdist(sys.argv[1]))"
    result = subprocess.run(
        [sys.executable, "-c", script, str(out)],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    sdist = result.stdout.split()[-1]
    with tarfile.open(out / sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
        entry = archive.extractfile(
            f"{sdist.removesuffix('.tar.gz')}/lowcarb.egg-info/entry_points.txt"
        )
        assert entry is not None
        entry_points = entry.read().decode()
    assert re.search(r"^lowcarb = scheduler\.cli\.main:main$", entry_points, re.MULTILINE)
    assert {"README.md", "scheduler/cli/main.py", "carbon/__init__.py"} <= names
    assert "scheduler/data/default.yaml" in names, "package data must ship"
