"""The gpu_fit term on real Node objects and a real kube-scheduler filter payload."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from pydantic import ValidationError

from carbon.energy import PowerModel
from carbon.testing import FixedView
from scheduler import wire
from scheduler.cluster.state import ClusterState
from scheduler.cluster.table import NodeTable
from scheduler.demand import PodDemand, parse_demand
from scheduler.gpu.fragmentation import TaskShape, Workload
from scheduler.scoring import Evaluation, Step, evaluate
from scheduler.sim.baselines import rank_by
from scheduler.terms.base import Context
from scheduler.terms.gpu_fit import (
    ORDER_STEPS,
    GpuFit,
    GpuFitArgs,
    Mode,
    fgd_preference,
    score_rows,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "gpu"


def bound_pod(
    uid: str, node: str, gpus: int, milli: int | None = None, index: str = ""
) -> wire.Pod:
    ann = {"lowcarb.dev/gpu-milli": str(milli)} if milli is not None else {}
    if index:
        ann["lowcarb.dev/gpu-index"] = index
    body: dict[str, Any] = {
        "metadata": {"name": uid, "namespace": "ns", "uid": uid, "annotations": ann},
        "spec": {
            "nodeName": node,
            "containers": [{"resources": {"requests": {"cpu": "1", "nvidia.com/gpu": str(gpus)}}}],
        },
        "status": {"phase": "Running"},
    }
    return msgspec.convert(body, wire.Pod)


@pytest.fixture()
def cluster() -> tuple[NodeTable, wire.ExtenderArgs]:
    """Real nodes; euc1-a-gpu has 2 of its 4 GPUs in use, usw2-b-gpu GPU 0 at 750 milli."""
    state = ClusterState()
    for item in msgspec.json.decode((FIXTURES / "nodes-list.json").read_bytes())["items"]:
        state.upsert_node(msgspec.convert(item, wire.Node))
    state.upsert_pod(bound_pod("a", "euc1-a-gpu", 2))
    state.upsert_pod(bound_pod("b", "usw2-b-gpu", 1, 750, "0"))
    args = wire.decode_args((FIXTURES / "filter.args.nodeCacheCapable-false.json").read_bytes())
    table, unknown = state.table_for(sorted(state.node_names()))
    assert not unknown
    return table, args


def ctx(table: NodeTable, pod: PodDemand) -> Context:
    return Context(
        pod=pod,
        table=table,
        carbon=FixedView(),  # knows no zone
        power=PowerModel(),
        now_s=0.0,
        duration_s=3600.0,
    )


def steps(term: GpuFit, mode: Mode = "fgd") -> list[Step]:
    """The GPU term alone in ``mode`` (a class's ``gpuMode``)."""
    return [Step(term, GpuFitArgs(gpuMode=mode))]


def ranked(c: Context, plan: list[Step]) -> Evaluation:
    """Evaluated and ranked by the GPU term alone: the fgd-extender baseline of the benchmarks."""
    return rank_by(evaluate(c, plan), "gpu_fit")


def reasons_by_name(table: NodeTable, term: GpuFit, pod: PodDemand) -> dict[str, str]:
    mask, reasons = term.filter(ctx(table, pod), GpuFitArgs())
    assert mask is not None
    rejected = np.flatnonzero(~mask).tolist()
    assert sorted(dict(reasons)) == rejected  # a reason for every rejected row, and only those
    return {table.names[i]: reasons[i] for i in rejected}


def test_filter_reasons_for_the_real_four_gpu_pod(cluster: tuple[NodeTable, Any]) -> None:
    table, args = cluster
    pod = parse_demand(args.Pod)
    assert pod.gpus == 4
    reasons = reasons_by_name(table, GpuFit(), pod)
    assert reasons["euc1-a-gpu"] == "needs 4 free GPUs, has 2 of 4"
    assert reasons["usw2-b-gpu"] == "needs 4 free GPUs, has 3 of 4"
    assert reasons["euc1-b-cpu"] == "needs 4 GPUs, node has no GPUs"
    assert "use1-a-gpu" not in reasons and "usw2-a-gpu" not in reasons


def test_filter_reasons_for_model_memory_and_fraction(cluster: tuple[NodeTable, Any]) -> None:
    table, _ = cluster
    term = GpuFit()
    wants_model = PodDemand(uid="m", namespace="ns", name="m", gpus=1, gpu_milli=1000)
    wants_model.models = ("A100", "H100")
    reasons = reasons_by_name(table, term, wants_model)
    assert reasons["usw2-b-gpu"] == "needs model A100|H100, node has NVIDIA-L4"
    assert reasons["euc1-b-cpu"] == "needs model A100|H100, node has no GPUs"
    assert "euc1-a-gpu" not in reasons  # NVIDIA-A100-PCIE-40GB matches A100

    wants_memory = PodDemand(uid="g", namespace="ns", name="g", gpus=1, gpu_milli=1000)
    wants_memory.min_gpu_mem_mib = 40 * 1024
    reasons = reasons_by_name(table, term, wants_memory)
    assert reasons["usw2-b-gpu"] == "needs 40960 MiB per GPU, node has 23034 MiB"

    share = PodDemand(uid="s", namespace="ns", name="s", gpus=1, gpu_milli=300)
    narrow = table.take(np.array([table.names.index("usw2-b-gpu")]))
    narrow.gpu_free[0, 1:] = 0  # only GPU 0 (250 free) is left
    reasons = reasons_by_name(narrow, term, share)
    assert reasons["usw2-b-gpu"] == "needs 300 milli on one GPU, best GPU has 250 free"


def test_fgd_names_the_shared_gpu_and_prefers_the_started_sliver(
    cluster: tuple[NodeTable, Any],
) -> None:
    table, _ = cluster
    workload = Workload((TaskShape(0, 1, 1000), TaskShape(0, 1, 250)), (0.5, 0.5))
    term = GpuFit(workload=workload)
    share = PodDemand(uid="s", namespace="ns", name="s", gpus=1, gpu_milli=250, cpu_milli=1000)
    ev = ranked(ctx(table, share), steps(term))
    best = int(np.nanargmax(ev.combined))
    # the 250 that is left on usw2-b-gpu's GPU 0 is exactly this pod's size: no new sliver
    assert table.names[best] == "usw2-b-gpu"
    assert ev.levels[best] == 10 and (ev.levels[ev.feasible] == 10).sum() == 1
    assert int(ev.terms["gpu_fit"].detail["gpu_index"][best]) == 0
    assert ev.terms["gpu_fit"].raw[best] < 0  # fragmentation shrinks


@pytest.mark.parametrize("mode", ["fgd", "bestfit", "packing", "spread"])
def test_every_mode_scores_feasible_rows_in_unit_range(
    cluster: tuple[NodeTable, Any], mode: Mode
) -> None:
    table, args = cluster
    pod = parse_demand(args.Pod)
    ev = evaluate(ctx(table, pod), steps(GpuFit(), mode))
    feasible = ev.feasible
    assert feasible.sum() == 2
    norm = ev.terms["gpu_fit"].normalized[feasible]
    assert np.all((norm >= 0) & (norm <= 1)) and norm.max() == 1.0


def test_fgd_consolidates_within_the_order_band(cluster: tuple[NodeTable, Any]) -> None:
    table, _ = cluster
    order = table.name_order()
    first, last = int(np.argmax(order)), int(np.argmin(order))
    assert ORDER_STEPS * (order[first] - order[last]) > 1  # the band spans more than one step
    delta = np.zeros(len(table))
    assert int(np.argmax(fgd_preference(delta, table))) == first  # equal FGD: order decides
    delta[last] = -40.0  # one step better (floor(100 * sigmoid(0.04)) = 51 vs 50): not enough
    assert int(np.argmax(fgd_preference(delta, table))) == first
    delta[last] = -1000.0  # a whole GPU less fragmentation: 23 steps, more than the band
    assert int(np.argmax(fgd_preference(delta, table))) == last


def test_bestfit_and_spread_disagree_on_a_partly_used_node(cluster: tuple[NodeTable, Any]) -> None:
    table, _ = cluster
    one = PodDemand(uid="o", namespace="ns", name="o", gpus=1, gpu_milli=1000, cpu_milli=1000)
    best = {}
    modes: tuple[Mode, ...] = ("bestfit", "spread")
    for mode in modes:
        ev = evaluate(ctx(table, one), steps(GpuFit(), mode))
        best[mode] = table.names[int(np.nanargmax(ev.combined))]
    assert best["bestfit"] == "euc1-a-gpu"  # 2 GPUs left, the tightest fit
    assert best["spread"] in {"use1-a-gpu", "usw2-a-gpu"}  # 8 free GPUs


def test_unknown_mode_is_refused_and_named(cluster: tuple[NodeTable, Any]) -> None:
    table, _ = cluster
    with pytest.raises(ValidationError):
        GpuFitArgs.model_validate({"gpuMode": "nope"})
    pod = PodDemand(uid="o", namespace="ns", name="o", gpus=1, gpu_milli=1000)
    with pytest.raises(ValueError, match="spread"):
        score_rows(table, pod, "nope", None)  # type: ignore[arg-type]


def test_observed_pods_become_the_expected_workload() -> None:
    term = GpuFit()
    for _ in range(60):
        term.observe(PodDemand(uid="x", namespace="n", name="x", gpus=1, gpu_milli=470))
    shapes = term.fragmentation_model().workload.shapes
    assert shapes == (TaskShape(0, 1, 470),)


def test_configure_changes_the_window_and_keeps_what_was_seen() -> None:
    term = GpuFit()
    for milli in [470] * 10 + [810] * 5:
        term.observe(PodDemand(uid="x", namespace="n", name="x", gpus=1, gpu_milli=milli))
    term.configure(window_pods=5)
    assert term.learner.window_pods == 5
    assert term.fragmentation_model().workload.shapes == (TaskShape(0, 1, 810),)
