"""Shared helpers for the deploy tests: repository paths, YAML loading, kustomize builds."""

from __future__ import annotations

import contextlib
import functools
import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.support.fakeapi import free_port
from tests.support.serve import listening, serve_processes, wait_ready

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
KUSTOMIZE = DEPLOY / "kustomize"
BASE = KUSTOMIZE / "base"
OVERLAYS = sorted(p for p in (KUSTOMIZE / "overlays").iterdir() if p.is_dir())
TARGETS = [BASE, *OVERLAYS]
# Oldest kube-scheduler lowcarb supports: manifests must validate against this API version.
KUBE_VERSION = "1.30"

Manifest = dict[str, Any]


def target_id(path: Path) -> str:
    """A short test id for a kustomize directory: 'base' or the overlay name."""
    return path.name


def load_yaml_documents(path: Path) -> list[Manifest]:
    """Every non-empty YAML document in a file."""
    with path.open(encoding="utf-8") as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc]


def kubectl() -> str:
    """Path of kubectl, or skip the calling test with the reason."""
    found = shutil.which("kubectl")
    if found is None:
        pytest.skip("kubectl is not installed: kustomize builds cannot be checked here")
    return found


@functools.cache
def _build(directory: Path) -> str:
    result = subprocess.run(
        [kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"kubectl kustomize {directory} failed:\n{result.stderr}")
    return result.stdout


def build(directory: Path) -> list[Manifest]:
    """The objects `kubectl kustomize DIRECTORY` renders (skips where kubectl is absent)."""
    return [doc for doc in yaml.safe_load_all(_build(directory)) if doc]


def find(objects: list[Manifest], kind: str, name: str) -> Manifest:
    """The one object of this kind named NAME (or NAME-<hash>, as generators name them)."""
    pattern = re.compile(rf"^{re.escape(name)}(-[a-z0-9]{{10}})?$")
    matches = [
        obj for obj in objects if obj["kind"] == kind and pattern.match(obj["metadata"]["name"])
    ]
    names = [f"{o['kind']}/{o['metadata']['name']}" for o in objects]
    assert len(matches) == 1, f"expected one {kind} named {name!r}, rendered: {names}"
    return matches[0]


def pod_containers(deployment: Manifest) -> list[Manifest]:
    """Init containers (native sidecars included) and containers of a Deployment's pod."""
    spec = deployment["spec"]["template"]["spec"]
    items: list[Manifest] = [*spec.get("initContainers", []), *spec["containers"]]
    return items


def container(deployment: Manifest, name: str) -> Manifest:
    """The container (or init container) called NAME in a Deployment's pod template."""
    items = pod_containers(deployment)
    for item in items:
        if item["name"] == name:
            return dict(item)
    raise AssertionError(f"no container {name!r} in {[c['name'] for c in items]}")


def flag_value(args: list[str], flag: str) -> str | None:
    """The value of FLAG in an argument list, as `--flag value` or `--flag=value`."""
    for index, arg in enumerate(args):
        if arg == flag and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith(f"{flag}="):
            return arg.split("=", 1)[1]
    return None


def validate_object(obj: Manifest) -> None:
    """Strict schema validation of a built-in kind (unknown fields are errors), oldest version."""
    try:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        where = ".".join(str(p) for p in error.path)
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        raise AssertionError(f"{name}: {where}: {error.message}") from error


def selects(selector: Manifest, labels: dict[str, str]) -> bool:
    """Whether a Kubernetes label selector (matchLabels, matchExpressions) matches LABELS."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for term in selector.get("matchExpressions", []):
        key, operator, values = term["key"], term["operator"], term.get("values", [])
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
        if operator not in {"In", "NotIn", "Exists", "DoesNotExist"}:
            raise AssertionError(f"unknown selector operator {operator!r}")
    return True


@contextlib.contextmanager
def running_lowcarb(args: Sequence[str], log: Path) -> Iterator[int]:
    """`lowcarb serve ARGS --host 127.0.0.1 --port <free>` until the block ends; yields the port.

    Waits until the port accepts connections; fails the test with the server's output if the
    process exits first or does not listen within a minute.
    """
    port = free_port()
    with serve_processes(log.parent) as procs:
        process, out = procs.start(*args, "--port", str(port), log_name=log.name)
        wait_ready(process, out, listening(port), f"listening on {port}")
        yield port
