"""requirements.lock: it pins, with hashes, everything pyproject.toml asks for on every supported
platform, and this environment was installed from it (as every make target does)."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

# the platforms and Pythons the lock is made for (`make lock`: --universal --python-version 3.11)
ENVIRONMENTS = [
    {"sys_platform": platform, "platform_system": system, "python_version": version,
     "python_full_version": f"{version}.0", "implementation_name": "cpython",
     "platform_python_implementation": "CPython", "platform_machine": "x86_64", "extra": ""}
    for platform, system in (("linux", "Linux"), ("darwin", "Darwin"), ("win32", "Windows"))
    for version in ("3.11", "3.12", "3.13")
]  # fmt: skip


@dataclass(frozen=True)
class Pin:
    name: str
    version: Version
    marker: Marker | None
    hashes: tuple[str, ...]

    def applies(self, env: dict[str, str] | None = None) -> bool:
        return self.marker is None or self.marker.evaluate(env)


def pins() -> list[Pin]:
    """Each requirement of the lock: ``name==version [; marker]`` and its ``--hash`` options."""
    text = re.sub(r"\\\n", " ", LOCK.read_text(encoding="utf-8"))
    found: list[Pin] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        hashes = tuple(re.findall(r"--hash=(sha256:[0-9a-f]{64})", line))
        spec = re.sub(r"\s*--hash=\S+", "", line).strip()
        req = Requirement(spec)
        [(op, version)] = [(s.operator, s.version) for s in req.specifier]
        assert op == "==", f"{spec}: the lock pins exact versions"
        found.append(Pin(canonicalize_name(req.name), Version(version), req.marker, hashes))
    return found


def wanted() -> list[Requirement]:
    """pyproject.toml's dependencies, its `dev` extra, the build backend, and pip."""
    project = PYPROJECT["project"]
    texts = [
        *project["dependencies"],
        *project["optional-dependencies"]["dev"],
        *PYPROJECT["build-system"]["requires"],
        "pip",
    ]
    return [Requirement(t) for t in texts]


def test_every_pin_is_exact_and_hashed() -> None:
    found = pins()
    assert len(found) > 50
    for pin in found:
        assert pin.hashes, f"{pin.name}=={pin.version} has no --hash"


@pytest.mark.parametrize(
    "env", ENVIRONMENTS, ids=[f"{e['sys_platform']}-py{e['python_version']}" for e in ENVIRONMENTS]
)
def test_lock_covers_pyproject_on_every_supported_platform(env: dict[str, str]) -> None:
    found = pins()
    for req in wanted():
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        name = canonicalize_name(req.name)
        chosen = [p for p in found if p.name == name and p.applies(env)]
        assert len(chosen) == 1, f"{req}: {len(chosen)} lock entries apply; run `make lock`"
        assert chosen[0].version in req.specifier, (
            f"{req}: the lock pins {chosen[0].version}, outside the range; run `make lock`"
        )


def test_this_environment_was_installed_from_the_lock() -> None:
    wrong = []
    for pin in pins():
        if not pin.applies():
            continue
        try:
            installed = Version(metadata.version(pin.name))
        except metadata.PackageNotFoundError:
            wrong.append(f"{pin.name}: not installed (lock: {pin.version})")
            continue
        if installed != pin.version:
            wrong.append(f"{pin.name}: {installed} installed, lock pins {pin.version}")
    assert not wrong, (
        "install with `make` (pip install --require-hashes -r requirements.lock): "
        + ("; ".join(wrong))
    )


def test_httpcore_finds_its_event_loop_without_a_failed_import() -> None:
    """httpcore asks sniffio which event loop runs on every lock and cancellation shield, by
    ``import sniffio`` inside the call; without sniffio installed each ask searches sys.path and
    fails (about 30 % of a Binding POST's CPU). Run it under asyncio and count imports that
    reach the path finders: none may."""
    import asyncio
    import sys

    from httpcore._synchronization import current_async_library

    searched: list[str] = []

    class Spy:
        @staticmethod
        def find_spec(name: str, path: object = None, target: object = None) -> None:
            searched.append(name)
            return None

    async def ask() -> str:
        return current_async_library()

    sys.meta_path.insert(0, Spy)
    try:
        assert asyncio.run(ask()) == "asyncio"
    finally:
        sys.meta_path.remove(Spy)
    assert "sniffio" not in searched, "sniffio is not installed: httpcore imports it per call"
