"""encode_priorities on a names array seen before (the cached byte template): same bytes as
msgspec, whatever the levels, and never stale when the same array object changes."""

from __future__ import annotations

import random

import numpy as np

from scheduler import wire


def _expected(names: list[str], levels: np.ndarray) -> bytes:
    return wire.encode(
        [wire.HostPriority(Host=n, Score=s) for n, s in zip(names, levels.tolist(), strict=True)]
    )


def test_repeated_array_matches_msgspec_for_any_levels() -> None:
    rng = np.random.default_rng(7)
    names = [f"gpu-node-{i:04d}" for i in range(600)]
    arr = np.empty(len(names), dtype=object)
    arr[:] = names
    cases = [
        rng.integers(0, 11, len(names)),  # ~55 tens: spliced
        np.full(len(names), 10),  # more tens than splices: the join path
        np.zeros(len(names), dtype=np.int64),
        np.where(np.arange(len(names)) == len(names) - 1, 10, 3),  # the last one is 10
        np.where(np.arange(len(names)) == 0, 10, 9),  # the first one is 10
    ]
    for _ in range(3):  # first sighting, template built, template used
        for levels in cases:
            assert wire.encode_priorities(arr, levels) == _expected(names, levels)


def test_same_array_changed_in_place_is_not_served_stale() -> None:
    names = ["a", "bb", "ccc"]
    arr = np.empty(3, dtype=object)
    arr[:] = names
    levels = np.array([10, 4, 0])
    for _ in range(3):
        assert wire.encode_priorities(arr, levels) == _expected(names, levels)
    arr[1] = "zz-longer"
    got = wire.encode_priorities(arr, levels)
    assert got == _expected(["a", "zz-longer", "ccc"], levels)


def test_escaped_names_in_a_repeated_array_take_the_msgspec_path() -> None:
    rnd = random.Random(1)
    names = ['q"uote', "back\\slash", "é", "plain"]
    arr = np.empty(len(names), dtype=object)
    arr[:] = names
    for _ in range(4):
        levels = np.array([rnd.randint(0, 10) for _ in names])
        assert wire.encode_priorities(arr, levels) == _expected(names, levels)
