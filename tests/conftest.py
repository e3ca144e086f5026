"""Shared test set-up: ``tests/kube/fakeapi.py`` (fake API server, free ports, kubeconfigs, the
``lowcarb`` command) is importable from every test directory as ``fakeapi``."""

from __future__ import annotations

import sys
from pathlib import Path

KUBE_TESTS = str(Path(__file__).resolve().parent / "kube")
if KUBE_TESTS not in sys.path:
    sys.path.append(KUBE_TESTS)
