"""Shared test set-up: ``tests/kube/fakeapi.py`` (fake API server, free ports, kubeconfigs, the
``lowcarb`` command) is importable from every test directory as ``fakeapi``; ``pin_clock`` runs
in-process code as of a fixed instant (subprocesses get ``LOWCARB_NOW`` instead)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from carbon import clock

KUBE_TESTS = str(Path(__file__).resolve().parent / "kube")
if KUBE_TESTS not in sys.path:
    sys.path.append(KUBE_TESTS)


@pytest.fixture
def pin_clock() -> Iterator[Callable[[datetime], None]]:
    """``pin_clock(moment)``: ``carbon.clock.wall`` reads ``moment`` now, then ticks on."""
    yield lambda moment: clock.pin(moment.timestamp())
    clock.reset()
