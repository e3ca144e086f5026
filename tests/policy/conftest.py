"""The policy tests reuse the fake Kubernetes API server of ``tests/kube`` for GET /explain."""

from __future__ import annotations

import sys
from pathlib import Path

KUBE_TESTS = str(Path(__file__).resolve().parent.parent / "kube")
if KUBE_TESTS not in sys.path:
    sys.path.append(KUBE_TESTS)
