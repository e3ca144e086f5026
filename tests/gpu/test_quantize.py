"""The 0..10 extender levels keep FGD's ranking: the best alone gets 10, order is never inverted."""

from __future__ import annotations

import numpy as np
import pytest

from scheduler.quantize import quantize


@pytest.mark.parametrize("seed", range(20))
def test_levels_are_monotone_and_only_true_ties_share_the_top(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 400))
    values = np.round(rng.normal(size=n) * rng.choice([1e-4, 1.0, 1e3]), int(rng.integers(1, 6)))
    levels = quantize(values)
    assert levels.min() >= 0 and levels.max() == 10
    top = values.max()
    assert set(np.flatnonzero(levels == 10).tolist()) == set(np.flatnonzero(values == top).tolist())
    order = np.argsort(values, kind="stable")
    assert (np.diff(levels[order]) >= 0).all()  # a better value never gets a lower level


def test_up_to_eleven_distinct_values_stay_distinct() -> None:
    values = np.array([1.0, 0.9999, 0.9998, 0.5, 0.0, 0.0001, 0.2, 0.21, 0.22, 0.3, 0.31])
    levels = quantize(values)
    assert len(set(levels.tolist())) == len(values)


def test_a_near_best_node_is_not_raised_to_the_best() -> None:
    # one better node among many equal ones: only it gets 10 (random tie-breaking cannot lose it)
    values = np.concatenate(([0.5000001], np.full(1000, 0.5), np.linspace(0, 0.4, 50)))
    levels = quantize(values)
    assert levels[0] == 10 and (levels[1:] < 10).all()


def test_non_finite_values_get_zero() -> None:
    levels = quantize(np.array([np.nan, 1.0, -np.inf, 0.5]))
    assert levels.tolist()[0] == 0 and levels.tolist()[2] == 0 and levels.tolist()[1] == 10
