"""gpu.count_true / gpus_fitting: the same counts as ``sum(axis=1)`` for any width and layout."""

from __future__ import annotations

import numpy as np
import pytest

from scheduler.gpu import supply as gpu


@pytest.mark.parametrize("width", [1, 3, 7, 8, 9, 16])
def test_counts_match_row_sums(width: int) -> None:
    rng = np.random.default_rng(width)
    free = rng.choice([-1, 0, 250, 500, 1000], size=(257, width)).astype(np.int32)
    for milli in (1, 250, 500, 1000):
        got = gpu.gpus_fitting(free, milli)
        assert got.dtype == np.int32
        assert got.tolist() == (free >= milli).sum(axis=1).tolist()


def test_non_contiguous_and_empty_inputs() -> None:
    free = np.tile(np.array([1000, 0], dtype=np.int32), (5, 8))[:, ::2]  # 8 wide, strided
    assert gpu.gpus_fitting(free, 1000).tolist() == [8] * 5
    assert gpu.count_true(np.zeros((0, 8), dtype=bool)).tolist() == []
    assert gpu.count_true(np.ones((3, 8), dtype=bool)).tolist() == [8, 8, 8]
