"""GPU gauges by zone: read from the cluster state at scrape time, following pods and nodes."""

from __future__ import annotations

import random
from collections.abc import Mapping

from prometheus_client import REGISTRY
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from scheduler.cluster import metrics
from scheduler.cluster.state import ClusterState
from scheduler.demand import PodDemand
from tests.test_cluster import Clock, node, pod


def scraped() -> dict[tuple[str, str, str], float]:
    """{(metric, zone, model): value} of the lowcarb_gpu* families in a real exposition."""
    out = {}
    for family in text_string_to_metric_families(generate_latest(REGISTRY).decode()):
        if family.name.startswith(("lowcarb_gpus_", "lowcarb_gpu_capacity")):
            for s in family.samples:
                out[s.name, s.labels["zone"], s.labels["model"]] = s.value
    return out


def test_gauges_follow_the_watched_state() -> None:
    state = ClusterState(clock=Clock())
    state.upsert_node(node("a", gpus=8, region="us-east-1"))
    state.upsert_node(node("b", gpus=8, region="us-east-1", rv="1"))
    state.upsert_node(node("c", gpus=4, product="NVIDIA-L4", region="eu-north-1"))
    state.upsert_node(node("cpu", gpus=0, product="", region="eu-north-1"))
    a100, l4 = "NVIDIA-A100-SXM4-80GB", "NVIDIA-L4"
    metrics.watch(state)
    try:
        assert scraped() == {
            ("lowcarb_gpus_total", "us-east-1", a100): 16,
            ("lowcarb_gpus_free", "us-east-1", a100): 16,
            ("lowcarb_gpu_capacity_free", "us-east-1", a100): 16,
            ("lowcarb_gpus_total", "eu-north-1", l4): 4,
            ("lowcarb_gpus_free", "eu-north-1", l4): 4,
            ("lowcarb_gpu_capacity_free", "eu-north-1", l4): 4,
        }
        state.upsert_pod(pod("p1", "a", gpus=3))
        # a quarter of one L4: that GPU is no longer whole, three quarters of it still free
        state.upsert_pod(pod("p2", "c", gpus=1, annotations={"lowcarb.dev/gpu-milli": "250"}))
        values = scraped()
        assert values["lowcarb_gpus_free", "us-east-1", a100] == 13
        assert values["lowcarb_gpu_capacity_free", "us-east-1", a100] == 13
        assert values["lowcarb_gpus_free", "eu-north-1", l4] == 3
        assert values["lowcarb_gpu_capacity_free", "eu-north-1", l4] == 3.75
        assert values["lowcarb_gpus_total", "eu-north-1", l4] == 4
        state.upsert_pod(pod("p1", "a", gpus=3, phase="Succeeded"))  # ended: its GPUs are free
        state.delete_node("b")
        values = scraped()
        assert values["lowcarb_gpus_free", "us-east-1", a100] == 8
        assert values["lowcarb_gpus_total", "us-east-1", a100] == 8
        other = ClusterState(clock=Clock())
        metrics.unwatch(other)  # not the watched one: nothing changes
        assert scraped() == values
    finally:
        metrics.unwatch(state)
    assert scraped() == {}  # no state watched: the families are there, without samples


def test_a_node_without_a_zone_is_counted_as_unknown() -> None:
    state = ClusterState(clock=Clock(), zone_of=lambda labels: None)
    state.upsert_node(node("a", gpus=2))
    assert metrics.gpus_by_zone(state) == {("unknown", "NVIDIA-A100-SXM4-80GB"): (2, 2, 2.0)}


def test_the_grouped_sums_equal_a_node_by_node_count() -> None:
    """Many zones and models, nodes with no zone or no GPU, whole and shared GPUs in use: each
    (zone, model) group sums exactly what its nodes hold, counted one node at a time."""
    rng = random.Random(5)
    regions = ("us-east-1", "eu-west-1", "eu-north-1", "ap-south-1", "nowhere")
    products = ("NVIDIA-A100-SXM4-80GB", "Tesla-T4", "NVIDIA-L4", "NVIDIA-H100-80GB-HBM3")
    state = ClusterState(clock=Clock(), zone_of=lambda labels: zone_of(labels, regions))
    for i in range(80):
        state.upsert_node(
            node(f"n{i}", gpus=rng.choice((0, 1, 2, 4, 8)), product=rng.choice(products),
                 region=rng.choice(regions))
        )  # fmt: skip
    names = state.node_names()
    for i in range(120):
        milli = rng.choice((1000, 500, 250))
        demand = PodDemand(f"p{i}", "ns", f"p{i}", gpus=1, gpu_milli=milli, cpu_milli=100,
                           mem_bytes=2**20)  # fmt: skip
        state.assume(demand, rng.choice(names), (0,) if demand.shares_gpu else ())
    table = state.full_table()
    want: dict[tuple[str, str], list[float]] = {}
    for i, zone in enumerate(table.zone_names()):
        gpus = int(table.gpu_total[i])
        if gpus <= 0:
            continue
        free = [int(v) for v in table.gpu_free[i][:gpus]]
        key = (zone or "unknown", table.models[int(table.gpu_model[i])])
        sums = want.setdefault(key, [0, 0, 0.0])
        sums[0] += gpus
        sums[1] += sum(v >= 1000 for v in free)
        sums[2] += sum(free) / 1000
    got = metrics.gpus_by_zone(state)
    assert {k: (v[0], v[1], round(v[2], 6)) for k, v in got.items()} == {
        k: (int(v[0]), int(v[1]), round(v[2], 6)) for k, v in want.items()
    }
    assert ("unknown", "Tesla-T4") in got or ("unknown", "NVIDIA-L4") in got  # no-zone nodes


def zone_of(labels: Mapping[str, str], regions: tuple[str, ...]) -> str | None:
    """The test's grid zone: the node's region, except the last region, which has none."""
    region = labels.get("topology.kubernetes.io/region")
    return None if region in (None, regions[-1]) else region
