"""Shared test set-up. Helpers live in ``tests/support`` and are imported as ``tests.support.X``
(fake API server, free ports, kubeconfigs, the ``lowcarb`` command, carbon doubles);
``pin_clock`` runs in-process code as of a fixed instant (subprocesses get ``LOWCARB_NOW``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

import pytest

from carbon import clock


@pytest.fixture
def pin_clock() -> Iterator[Callable[[datetime], None]]:
    """``pin_clock(moment)``: ``carbon.clock.wall`` reads ``moment`` now, then ticks on."""
    yield lambda moment: clock.pin(moment.timestamp())
    clock.reset()
