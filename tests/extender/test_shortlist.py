"""Filter's shortlist: only the cheapest feasible nodes go back to kube-scheduler, and prioritize
scores them exactly as it would have scored them among every candidate.

Replays the pod kube-scheduler v1.36.2 sent (a 4-GPU training pod) over 180 GPU nodes in three
grid zones, through one extender with a shortlist and one without, on the same cluster state.
"""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from carbon.testing import FixedView
from scheduler.cluster.state import ClusterState
from scheduler.demand import parse_demand
from scheduler.engine import Engine
from scheduler.extender.service import Extender
from scheduler.names import ANN_DECISION
from scheduler.policy.validate import load_policy
from tests.extender.test_bind_recheck import RecordingBinder
from tests.support.engine_spy import record_evaluations
from tests.test_cluster import node
from tests.test_cluster import pod as cluster_pod

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures/kube-scheduler/v1.36.2"
ARGS = json.loads((FIXTURES / "filter.args.nodeCacheCapable-true.json").read_text())
ZONES = {"SE": 30.0, "DE": 380.0, "PL": 700.0}
NAMES = [f"{zone.lower()}-{i:03d}" for zone in ZONES for i in range(60)]
LIMIT = 20


def build() -> tuple[ClusterState, Extender, Extender, RecordingBinder, RecordingBinder]:
    state = ClusterState()
    for name in NAMES:
        state.upsert_node(node(name, region=name[:2].upper()))
    state.mark_synced()
    engine = Engine(load_policy(None))
    view = FixedView(ZONES)

    def ext(limit: int) -> tuple[Extender, RecordingBinder]:
        binder = RecordingBinder()
        e = Extender(state, lambda: engine, lambda: view, binder=binder, clock=lambda: 0.0)
        e.shortlist = limit
        return e, binder

    (short, short_binds), (full, full_binds) = ext(LIMIT), ext(0)
    return state, short, full, short_binds, full_binds


def args(names: list[str], uid: str = "uid-1", spec: dict[str, Any] | None = None) -> bytes:
    body = copy.deepcopy(ARGS)
    body.pop("Nodes", None)
    body["NodeNames"] = names
    body["Pod"]["metadata"]["uid"] = uid
    body["Pod"]["spec"].update(spec or {})
    return json.dumps(body).encode()


def passed(answer: bytes) -> list[str]:
    got = json.loads(answer)
    assert not got.get("Error"), got
    return list(got["NodeNames"])


def scores(answer: bytes) -> dict[str, int]:
    return {p["Host"]: p["Score"] for p in json.loads(answer)}


def test_filter_passes_the_cheapest_nodes_and_fails_none_for_it() -> None:
    _, short, full, _, _ = build()
    kept = passed(short.filter(args(NAMES)))
    assert len(kept) == LIMIT
    assert all(name.startswith("se-") for name in kept)  # the clean zone, all GPUs free
    assert not json.loads(short.filter(args(NAMES))).get("FailedNodes")  # left off, not failed
    assert len(passed(full.filter(args(NAMES)))) == len(NAMES)


def test_prioritize_scores_the_shortlist_as_among_every_candidate() -> None:
    state, short, full, _, _ = build()
    # the fleet partly busy, unevenly, so that levels and stranded GPUs differ by node
    for i, name in enumerate(NAMES[:50]):
        state.upsert_pod(cluster_pod(f"busy-{i}", name, gpus=1 + i % 7))
    kept = passed(short.filter(args(NAMES)))
    assert len(kept) == LIMIT
    want = scores(full.prioritize(args(NAMES)))
    got = scores(short.prioritize(args(kept)))
    assert got == {h: s for h, s in want.items() if h in kept}
    assert max(got.values()) == max(want.values())  # the best node is on the shortlist


def test_a_change_between_filter_and_prioritize_is_scored() -> None:
    state, short, full, _, _ = build()
    kept = passed(short.filter(args(NAMES)))
    before = scores(short.prioritize(args(kept)))
    # the previous pod's bind lands in between: the best node now has 7 of its 8 GPUs taken
    best = max(before, key=before.__getitem__)
    state.upsert_pod(cluster_pod("between", best, gpus=7))
    got = scores(short.prioritize(args(kept)))
    want = scores(full.prioritize(args(NAMES)))
    assert got == {h: s for h, s in want.items() if h in kept}
    assert got.get(best, 0) == 0  # a 4-GPU pod no longer fits there


def test_a_pod_bound_off_the_shortlist_reuses_the_filters_pricing() -> None:
    """Only changes to shortlisted nodes (or to the node set) make prioritize price again."""
    state, short, _, _, _ = build()
    evaluations = record_evaluations(short)
    kept = passed(short.filter(args(NAMES)))
    before = scores(short.prioritize(args(kept)))
    state.upsert_pod(cluster_pod("elsewhere", "pl-059", gpus=8))  # not shortlisted
    assert scores(short.prioritize(args(kept))) == before
    assert [e.rows for e in evaluations] == [len(NAMES)]  # the filter's, and no other
    state.upsert_pod(cluster_pod("here", kept[-1], gpus=1))
    short.prioritize(args(kept))
    # priced again, over every candidate
    assert [e.rows for e in evaluations] == [len(NAMES), len(NAMES)]


def test_the_watch_confirming_an_assumed_pod_is_no_change() -> None:
    """kube-scheduler's next filter often comes between lowcarb's bind (the pod assumed) and the
    watch showing it bound: that confirmation (or a status change) changes nothing a score
    reads, so prioritize keeps the filter's pricing; a pod moving to another node does not."""
    state, short, _, _, _ = build()
    evaluations = record_evaluations(short)
    node = passed(short.filter(args(NAMES, uid="uid-0")))[0]  # where the previous pod goes
    first = cluster_pod("n-1", node, gpus=0, cpu="1", phase="Pending")  # keeps its rank
    state.assume(parse_demand(first), node)  # lowcarb's bind
    kept = passed(short.filter(args(NAMES)))
    assert node in kept
    state.upsert_pod(first)  # the watch: bound where lowcarb assumed it
    state.upsert_pod(cluster_pod("n-1", node, gpus=0, cpu="1", phase="Running"))
    del evaluations[:]
    short.prioritize(args(kept))
    assert [e.rows for e in evaluations] == []
    state.upsert_pod(cluster_pod("n-1", kept[1], gpus=0, cpu="1"))  # elsewhere after all
    short.prioritize(args(kept))
    assert [e.rows for e in evaluations] == [len(NAMES)]


def test_a_shortlisted_node_deleted_before_prioritize_scores_nothing() -> None:
    state, short, _, _, _ = build()
    kept = passed(short.filter(args(NAMES)))
    state.delete_node(kept[0])
    got = scores(short.prioritize(args(kept)))
    assert kept[0] not in got
    assert set(got) <= set(kept[1:]) and got


def test_bind_records_the_whole_candidate_list() -> None:
    """The ledger's counterfactual (a carbon-unaware placement: mean over feasible candidates)
    and candidate count come from every candidate, not from the cleaner few passed on."""
    _, short, full, short_binds, full_binds = build()
    kept = passed(short.filter(args(NAMES)))
    short.prioritize(args(kept))
    full.filter(args(NAMES))
    full.prioritize(args(NAMES))
    binding = {"PodName": "train-h100", "PodNamespace": "e2e", "PodUID": "uid-1", "Node": kept[0]}
    asyncio.run(short.bind(json.dumps(binding).encode()))
    asyncio.run(full.bind(json.dumps(binding).encode()))
    [(_, _, a)], [(_, _, b)] = short_binds.calls, full_binds.calls
    mine, theirs = json.loads(a[ANN_DECISION]), json.loads(b[ANN_DECISION])
    assert mine == theirs
    assert mine["candidates"] == len(NAMES)


@pytest.mark.parametrize(
    "spec",
    [
        {
            "affinity": {
                "nodeAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "weight": 50,
                            "preference": {
                                "matchExpressions": [
                                    {"key": "team", "operator": "In", "values": ["a"]}
                                ]
                            },
                        }
                    ]
                }
            }
        },
        {
            "affinity": {
                "podAntiAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "weight": 10,
                            "podAffinityTerm": {
                                "topologyKey": "kubernetes.io/hostname",
                                "labelSelector": {"matchLabels": {"app": "train"}},
                            },
                        }
                    ]
                }
            }
        },
        {
            "topologySpreadConstraints": [
                {
                    "maxSkew": 1,
                    "topologyKey": "topology.kubernetes.io/zone",
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": {"app": "train"}},
                }
            ]
        },
    ],
    ids=["preferred-node-affinity", "preferred-pod-anti-affinity", "spread-schedule-anyway"],
)
def test_soft_preferences_get_every_feasible_node(spec: dict[str, Any]) -> None:
    """kube-scheduler's plugins weigh these over all nodes: a shortlist would hide their pick."""
    _, short, _, _, _ = build()
    assert len(passed(short.filter(args(NAMES, spec=spec)))) == len(NAMES)


def test_hard_spread_still_gets_a_shortlist() -> None:
    spec = {
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}
        ]
    }
    _, short, _, _, _ = build()
    assert len(passed(short.filter(args(NAMES, spec=spec)))) == LIMIT


def test_no_shortlist_when_few_nodes_fit() -> None:
    state, short, _, _, _ = build()
    for i, name in enumerate(NAMES[: len(NAMES) - LIMIT]):
        state.upsert_pod(cluster_pod(f"full-{i}", name, gpus=8))
    got = json.loads(short.filter(args(NAMES)))
    assert sorted(got["NodeNames"]) == sorted(NAMES[-LIMIT:])
    assert len(got["FailedNodes"]) == len(NAMES) - LIMIT


def test_a_later_cycle_without_a_shortlist_forgets_the_earlier_one() -> None:
    """The same pod filtered again when few nodes fit: prioritize scores what it is sent."""
    state, short, full, binds, _ = build()
    kept = passed(short.filter(args(NAMES)))
    for i, name in enumerate(n for n in NAMES if n not in kept[:5]):
        state.upsert_pod(cluster_pod(f"full-{i}", name, gpus=8))
    few = passed(short.filter(args(NAMES)))
    assert few == kept[:5]
    assert scores(short.prioritize(args(few))) == scores(full.prioritize(args(few)))
    binding = {"PodName": "train-h100", "PodNamespace": "e2e", "PodUID": "uid-1", "Node": few[0]}
    asyncio.run(short.bind(json.dumps(binding).encode()))
    assert json.loads(binds.calls[0][2][ANN_DECISION])["candidates"] == 5


def test_node_objects_mode_echoes_only_the_shortlist() -> None:
    """nodeCacheCapable: false: the answer carries the shortlisted nodes' very bytes."""
    _, short, _, _, _ = build()
    body = copy.deepcopy(ARGS)
    body.pop("NodeNames", None)
    items = [msgspec.to_builtins(node(n, region=n[:2].upper())) for n in NAMES]
    body["Nodes"] = {"items": items}
    got = json.loads(short.filter(json.dumps(body).encode()))
    names = [item["metadata"]["name"] for item in got["Nodes"]["items"]]
    assert len(names) == LIMIT and all(n.startswith("se-") for n in names)
    assert got["Nodes"]["items"][0] == items[NAMES.index(names[0])]


@pytest.mark.parametrize("seed", range(6))
def test_shortlist_rows_are_the_best_by_level_then_cost_then_row(seed: int) -> None:
    """The partition picks exactly what sorting every feasible row by (level desc, cost, row)
    picks, with many ties in level and in cost (the coarse 0..10 answer makes them common)."""
    import numpy as np

    from scheduler.extender.shortlist import shortlist_rows
    from scheduler.scoring import CostBreakdown, Evaluation

    rng = np.random.default_rng(seed)
    n = 400
    feasible = rng.random(n) < 0.8
    combined = np.where(feasible, rng.integers(0, 4, n) + 0.1 * rng.integers(0, 3, n) / 2, np.nan)
    cost = np.where(feasible, rng.integers(0, 5, n).astype(float), np.nan)
    cost[rng.random(n) < 0.05] = np.nan  # an unpriced feasible row sorts last among its level
    zeros = np.zeros(n)
    breakdown = CostBreakdown(0.0, 0.0, 0.0, 0.0, zeros, zeros, zeros, zeros, zeros, cost)
    ev = Evaluation(feasible, [], {}, combined, np.zeros(n, dtype=np.int64), cost=breakdown)
    rows = np.flatnonzero(feasible)
    for limit in (1, 7, 50, int(feasible.sum()) - 1):
        key = np.lexsort((rows, np.nan_to_num(cost[rows], nan=np.inf), -combined[rows]))
        expected = np.sort(rows[key[:limit]])
        got = shortlist_rows(ev, limit)
        assert got is not None and got.tolist() == expected.tolist()
    assert shortlist_rows(ev, int(feasible.sum())) is None
