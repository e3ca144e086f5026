"""Hard constraints: data residency always; the intensity ceiling only when cleaner nodes fit."""

from __future__ import annotations

from carbon.testing import FixedView
from scheduler.demand import PodDemand
from scheduler.engine import Engine
from scheduler.policy.validate import policy_from_text
from tests.support.policy import node_table

POLICY = policy_from_text(
    """\
apiVersion: lowcarb.dev/v2
kind: Policy
classes:
  eu:
    constraints:
      allowedRegions: ["eu-*"]
  zones:
    prices: {gpuHourIdle: 0}
    constraints:
      allowedZones: ["SE*", "FR"]
  ceiling:
    prices: {gpuHourIdle: 0}
    constraints:
      maxIntensity: 300
"""
)
ROWS = [
    ("se", "SE-SE3", "eu-north-1", "NVIDIA-A100-SXM4-80GB", 8),
    ("fr", "FR", "eu-west-3", "NVIDIA-A100-SXM4-80GB", 2),
    ("pl", "PL", "eu-central-2", "NVIDIA-A100-SXM4-80GB", 8),
    ("us", "US-MIDA-PJM", "us-east-1", "NVIDIA-A100-SXM4-80GB", 8),
    ("nz", None, "", "NVIDIA-A100-SXM4-80GB", 8),
]
VIEW = FixedView({"SE-SE3": 23.4, "FR": 99.4, "PL": 819.2, "US-MIDA-PJM": 425.3})


def pod(gpus: int = 1) -> PodDemand:
    return PodDemand(uid="u", namespace="n", name="p", gpus=gpus, gpu_milli=1000, cpu_milli=1000)


def test_allowed_regions_filter_with_reasons() -> None:
    ev = Engine(POLICY).evaluate(pod(), node_table(ROWS), VIEW, 0.0, klass="eu")
    assert ev.feasible.tolist() == [True, True, True, False, False]
    assert ev.reasons[3] == (
        "region 'us-east-1' is outside class 'eu''s allowedRegions ['eu-*'] (data residency)"
    )
    assert "'(no region label)'" in ev.reasons[4]
    assert ev.levels[:3].max() == 10 and ev.levels[3:].tolist() == [0, 0]


def test_allowed_zones_globs_and_unknown_zone() -> None:
    ev = Engine(POLICY).evaluate(pod(), node_table(ROWS), VIEW, 0.0, klass="zones")
    assert ev.feasible.tolist() == [True, True, False, False, False]
    assert "grid zone 'PL' is outside class 'zones''s allowedZones" in ev.reasons[2]
    assert "grid zone '(unknown)'" in ev.reasons[4]


def test_ceiling_filters_dirty_zones_when_cleaner_nodes_fit() -> None:
    demand = pod()
    ev = Engine(POLICY).evaluate(demand, node_table(ROWS), VIEW, 0.0, klass="ceiling")
    assert ev.feasible.tolist() == [True, True, False, False, True]
    assert ev.reasons[2] == (
        "grid intensity 819 gCO2e/kWh in zone 'PL' is above class 'ceiling''s maxIntensity 300 "
        "(cleaner feasible nodes exist)"
    )
    assert "zone 'US-MIDA-PJM'" in ev.reasons[3]
    assert not any("maxIntensity" in n for n in demand.notes)


def test_ceiling_keeps_dirty_nodes_when_no_clean_node_fits() -> None:
    """A 4-GPU pod: the clean SE node is full, FR has only 2 GPUs; PL and US must stay."""
    table = node_table(ROWS)
    table.gpu_free[0, :] = 0  # SE busy
    demand = pod(gpus=4)
    ev = Engine(POLICY).evaluate(demand, table, VIEW, 0.0, klass="ceiling")
    assert ev.feasible.tolist() == [False, False, True, True, True]
    assert ev.reasons[0].startswith("needs 4 free GPUs")  # the GPU filter's reason, not ours
    assert demand.notes[0] == (
        "no feasible node is known to be at or below class 'ceiling''s maxIntensity 300 "
        "gCO2e/kWh; none was filtered for intensity"
    )
    assert demand.notes[1].startswith("no_zone: 1 node(s) with no grid zone")
    assert demand.notes[1].endswith(
        "carbon term scored neutral (the candidates' mean emissions: neither best nor worst)"
    )
    # among the dirty ones, the cleaner grid still wins on emissions
    assert int(ev.levels[3]) == 10


def test_filter_only_call_matches_the_scoring_call() -> None:
    """The extender's filter verb (score=False) rejects exactly what prioritize would."""
    engine = Engine(POLICY)
    a = engine.evaluate(pod(), node_table(ROWS), VIEW, 0.0, klass="ceiling", score=False)
    b = engine.evaluate(pod(), node_table(ROWS), VIEW, 0.0, klass="ceiling")
    assert a.feasible.tolist() == b.feasible.tolist()
    assert a.reasons == b.reasons
