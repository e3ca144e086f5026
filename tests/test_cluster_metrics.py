"""GPU gauges by zone: read from the cluster state at scrape time, following pods and nodes."""

from __future__ import annotations

from prometheus_client import REGISTRY
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from scheduler.cluster import metrics
from scheduler.cluster.state import ClusterState
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
