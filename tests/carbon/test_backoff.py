"""The one exponential backoff (kube reflectors, the gate controller, the carbon cache)."""

from __future__ import annotations

import random

from carbon.backoff import Backoff


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    b = Backoff(base=0.5, cap=8.0, rng=random.Random(7))
    delays = [b.next_delay() for _ in range(8)]
    ceilings = [min(8.0, 0.5 * 2**i) for i in range(8)]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert delays[-1] <= 8.0 and delays[4] > delays[0]
    assert len(set(delays)) == len(delays)  # jittered
    b.reset()
    assert b.next_delay() <= 0.5


def test_backoff_never_goes_below_its_floor() -> None:
    b = Backoff(base=0.001, cap=0.002, floor=0.05, rng=random.Random(1))
    assert [b.next_delay() for _ in range(3)] == [0.05, 0.05, 0.05]


def test_backoff_without_jitter_is_the_stated_schedule() -> None:
    """The carbon cache's per-provider back-off: initial, doubled per failure, up to max."""
    b = Backoff(base=10.0, cap=600.0, floor=0.0, jitter=False)
    assert [b.next_delay() for _ in range(8)] == [10, 20, 40, 80, 160, 320, 600, 600]
    resumed = Backoff(base=1.0, cap=60.0, attempts=3, jitter=False)  # the gate controller's form
    assert resumed.next_delay() == 8.0 and resumed.attempts == 4
