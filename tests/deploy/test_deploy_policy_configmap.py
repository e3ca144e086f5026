"""The policy ConfigMap as the kubelet mounts it: it loads, and edits reach the running store."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from scheduler.engine import EngineStore
from tests.support.deploy import BASE, load_yaml_documents

SHIPPED_POLICY = BASE / "files" / "default.yaml"


class ConfigMapVolume:
    """A directory laid out like the kubelet's atomic writer for a ConfigMap volume.

    ``policy.yaml -> ..data/policy.yaml`` and ``..data -> ..<version>``; an update writes a new
    version directory, renames a fresh ``..data`` symlink over the old one, then deletes
    the old version directory.
    """

    def __init__(self, root: Path, key: str) -> None:
        self.root, self.key, self.version = root, key, 0

    @property
    def path(self) -> Path:
        return self.root / self.key

    def publish(self, content: bytes) -> None:
        self.version += 1
        version_dir = self.root / f"..2026_11_28_12_00_{self.version:02d}.000000001"
        version_dir.mkdir()
        (version_dir / self.key).write_bytes(content)
        data = self.root / "..data"
        previous = data.resolve() if data.is_symlink() else None
        staging = self.root / "..data_tmp"
        staging.symlink_to(version_dir.name)
        os.replace(staging, data)
        if not self.path.is_symlink():
            self.path.symlink_to(f"..data/{self.key}")
        if previous is not None:  # the kubelet removes the old version afterwards
            shutil.rmtree(previous)


def policy_key() -> str:
    """The key the base kustomization gives the policy in the ConfigMap."""
    (kustomization,) = load_yaml_documents(BASE / "kustomization.yaml")
    (generator,) = [g for g in kustomization["configMapGenerator"] if g["name"] == "lowcarb-policy"]
    (entry,) = generator["files"]
    key: str = entry.split("=", 1)[0]
    return key


def test_shipped_policy_loads_through_the_mounted_layout(tmp_path: Path) -> None:
    volume = ConfigMapVolume(tmp_path, policy_key())
    volume.publish(SHIPPED_POLICY.read_bytes())
    store = EngineStore(volume.path)
    assert store.last_error is None
    assert store.reload() is False  # unchanged content is not a reload


def test_configmap_update_by_symlink_swap_is_picked_up(tmp_path: Path) -> None:
    volume = ConfigMapVolume(tmp_path, policy_key())
    shipped = SHIPPED_POLICY.read_bytes()
    volume.publish(shipped)
    store = EngineStore(volume.path)
    first = store.policy

    volume.publish(shipped + b"\n# edited by kubectl apply\n")
    assert store.reload() is True
    assert store.policy is not first

    # A broken edit keeps the last good policy and reports why.
    good = store.policy
    volume.publish(b"apiVersion: lowcarb.dev/v2\nkind: Policy\nclasses: 7\n")
    assert store.reload() is False
    assert store.policy is good
    assert store.last_error is not None and "classes" in store.last_error
