"""A filter's candidate view: the rows in the state's order, the same view for the same set of
names, refreshed only where rows changed, and always equal to a fresh take of those rows."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping, Sequence

import msgspec
import numpy as np
import pytest

import scheduler.cluster.views as views_module
from scheduler import wire
from scheduler.cluster.state import ClusterState
from scheduler.cluster.table import NodeTable
from scheduler.cluster.views import CandidateViews, fingerprint, refreshed
from scheduler.demand import PodDemand
from tests.e2e.objects import gpu_node

PRODUCTS = ("NVIDIA-A100-SXM4-80GB", "Tesla-T4", "NVIDIA-H100-80GB-HBM3")
ARRAYS = ("zone", "gpu_model", "gpu_total", "gpu_free", "gpu_mem_mib", "cpu_free", "mem_free")


def node(i: int, *, region: str | None = None, rv: str = "1", gpus: int = 4) -> wire.Node:
    raw = gpu_node(
        f"n{i:03d}", region=region or ("us-east", "eu-west", "eu-north")[i % 3],
        product=PRODUCTS[i % 3], gpus=gpus,
    )  # fmt: skip
    raw["metadata"].update(uid=f"u{i}", resourceVersion=rv)
    return msgspec.convert(raw, wire.Node)


def fleet(n: int) -> ClusterState:
    state = ClusterState()
    for i in range(n):
        state.upsert_node(node(i, gpus=(1, 2, 4, 8)[i % 4]))
    return state


def demand(uid: str, gpus: int = 1, milli: int = 1000) -> PodDemand:
    return PodDemand(uid, "ns", uid, gpus=gpus, gpu_milli=milli, cpu_milli=1000, mem_bytes=2**30)


def assert_same_rows(got: NodeTable, want: NodeTable) -> None:
    assert got.names == want.names and got.region == want.region
    assert list(got.region_array()) == want.region and list(got.name_array()) == want.names
    for column in (*ARRAYS, "mig_free"):
        assert np.array_equal(getattr(got, column), getattr(want, column)), column
    assert np.array_equal(got.name_order(), want.name_order())
    assert got.origin is not None and want.origin is not None
    assert got.origin.epoch == want.origin.epoch
    assert np.array_equal(got.origin.rows, want.origin.rows)
    assert np.array_equal(got.origin.versions, want.origin.versions)


def fresh_take(state: ClusterState, names: list[str]) -> NodeTable:
    """What a view of ``names`` must hold: a plain take of their rows in the state's order."""
    table, _ = state.table_for(sorted(names, key=state.node_names().index))
    return table


def test_rows_come_in_the_state_order_whatever_the_request_order() -> None:
    state = fleet(12)
    names = state.node_names()
    shuffled = [*names[::-1][:9], "ghost-a", "ghost-b"]
    view, unknown = state.view_for(shuffled)
    assert unknown == ["ghost-a", "ghost-b"]
    assert view.names == [n for n in names if n in shuffled]
    assert_same_rows(view, fresh_take(state, view.names))


def test_a_view_equals_a_fresh_take_while_pods_come_and_go_and_nodes_change() -> None:
    state = fleet(40)
    names = state.node_names()
    rng = random.Random(11)
    placed: list[str] = []
    held: list[tuple[NodeTable, NodeTable]] = []  # earlier views, and a copy of each
    for step in range(120):
        rng.shuffle(names)  # kube-scheduler's order changes every cycle
        ask = names if rng.random() < 0.7 else names[: rng.randint(20, 40)]
        view, unknown = state.view_for(ask)
        assert unknown == []
        assert_same_rows(view, fresh_take(state, ask))
        copies = {c: getattr(view, c).copy() for c in ARRAYS}
        held.append((view, dataclasses.replace(view, region=list(view.region), **copies)))
        roll = rng.random()
        if roll < 0.6:
            pod = demand(f"p{step}", gpus=rng.choice((1, 2)), milli=rng.choice((1000, 500)))
            state.assume(pod, rng.choice(names), (0,) if pod.shares_gpu else ())
            placed.append(pod.uid)
        elif roll < 0.8 and placed:
            state.forget(placed.pop(rng.randrange(len(placed))))
        else:  # a node's labels and allocatable change in place (a new resourceVersion)
            i = rng.randrange(40)
            state.upsert_node(node(i, region=rng.choice(("us-east", "eu-west")), rv=str(step + 2),
                                   gpus=(1, 2, 4, 8)[i % 4]))  # fmt: skip
    for view, copy in held:  # a view handed out is never changed by a later refresh
        for column in ARRAYS:
            assert np.array_equal(getattr(view, column), getattr(copy, column)), column
        assert view.region == copy.region


def test_only_rows_whose_version_moved_are_read_again() -> None:
    state = fleet(30)
    names = state.node_names()
    first, _ = state.view_for(names)
    base = state.full_table()
    # scribble on a copy of the base's rows: a refresh must read only the changed row
    scribbled = dataclasses.replace(base, gpu_free=np.full_like(base.gpu_free, 7))
    assert base.origin is not None
    scribbled.origin = dataclasses.replace(base.origin, versions=base.origin.versions.copy())
    scribbled.origin.versions[5] += 1
    again = refreshed(scribbled, first)
    assert again is not None
    assert np.array_equal(again.gpu_free[5], np.full(base.gpu_free.shape[1], 7))
    others = np.arange(30) != 5
    assert np.array_equal(again.gpu_free[others], first.gpu_free[others])
    # a real assume bumps exactly that row
    state.assume(demand("q", gpus=1), names[3])
    view, _ = state.view_for(list(reversed(names)))
    assert view.origin is not None and first.origin is not None
    assert np.flatnonzero(view.origin.versions != first.origin.versions).tolist() == [3]
    assert not np.array_equal(view.gpu_free[3], first.gpu_free[3])
    assert_same_rows(view, fresh_take(state, names))
    # copy on write: the columns the assume moved are new arrays, the others are shared
    assert view.gpu_free is not first.gpu_free and view.cpu_free is not first.cpu_free
    assert view.zone is first.zone and view.gpu_model is first.gpu_model
    assert view.names is first.names and view.region is first.region


def test_a_new_node_set_takes_afresh() -> None:
    state = fleet(10)
    names = state.node_names()
    before, _ = state.view_for(names)
    state.upsert_node(node(10))
    after, _ = state.view_for([*names, "n010"])
    assert before.origin is not None and after.origin is not None
    assert after.origin.epoch != before.origin.epoch and len(after) == 11
    assert_same_rows(after, fresh_take(state, [*names, "n010"]))
    state.delete_node("n004")
    gone, unknown = state.view_for([*names, "n010"])
    assert unknown == ["n004"] and "n004" not in gone.names
    assert_same_rows(gone, fresh_take(state, gone.names))


def test_the_names_are_looked_up_again_only_when_the_set_or_the_node_set_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = fleet(20)
    names = state.node_names()
    lookups: list[int] = []
    real = views_module.rows_of

    def counted(index: Mapping[str, int], asked: Sequence[str]) -> tuple[np.ndarray, list[str]]:
        lookups.append(len(asked))
        return real(index, asked)

    monkeypatch.setattr(views_module, "rows_of", counted)
    ask = [*names[:15], "ghost"]
    first, unknown = state.view_for(ask)
    assert unknown == ["ghost"] and lookups == [16]
    for _ in range(2):
        unknown.append("scribbled")  # the caller's list is its own
        again, unknown = state.view_for(list(reversed(ask)))  # same set, new order: no lookup
        assert unknown == ["ghost"] and lookups == [16]
        assert_same_rows(again, first)
    swapped = [*names[:14], names[15], "ghost"]  # same count, one name swapped
    view, _ = state.view_for(swapped)
    assert lookups == [16, 16] and names[15] in view.names and names[14] not in view.names
    assert_same_rows(view, fresh_take(state, view.names))
    state.upsert_node(node(99))  # a new node set: the index is rebuilt, the memo cannot answer
    state.assume(demand("q"), names[0])
    view, unknown = state.view_for([*swapped, "n099"])
    assert unknown == ["ghost"] and "n099" in view.names and len(lookups) == 3
    state.delete_node(names[1])
    view, unknown = state.view_for([*swapped, "n099"])  # the same set, a new index
    assert sorted(unknown) == sorted(["ghost", names[1]]) and len(lookups) == 4
    assert_same_rows(view, fresh_take(state, view.names))


def test_the_fingerprint_is_order_free_and_tells_sets_apart() -> None:
    names = [f"gpu-node-{i:04d}" for i in range(2000)]
    rng = random.Random(3)
    shuffled = names[:]
    rng.shuffle(shuffled)
    assert fingerprint(shuffled) == fingerprint(names)
    seen = {fingerprint(names)}
    for i in range(200):  # one name swapped for another, one dropped, one added
        seen.add(fingerprint([*names[:i], f"gpu-node-{9000 + i}", *names[i + 1 :]]))
        seen.add(fingerprint(names[:i] + names[i + 1 :]))
        seen.add(fingerprint([*names, f"gpu-node-{9000 + i}"]))
    assert len(seen) == 601


def test_a_view_of_another_table_is_never_refreshed_from_it() -> None:
    one, two = fleet(8), fleet(8)  # same names and size, separate tables
    two.assume(demand("x", gpus=4), "n003")
    views = CandidateViews()
    a = views.view(one.full_table(), np.arange(8))
    b = views.view(two.full_table(), np.arange(8))
    assert a.origin is not None and b.origin is not None and a.origin.epoch != b.origin.epoch
    assert_same_rows(b, two.full_table())
