"""The carbon term's expected gCO2e per node, checked by hand, and how it combines into 0..10."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from carbon.energy import PowerModel
from carbon.testing import FixedView
from scheduler.demand import PodDemand
from scheduler.engine import Engine
from scheduler.policy.validate import policy_from_text, validate_text
from scheduler.terms.base import Context, TermArgs, TermScore, ZoneData
from scheduler.terms.carbon import Carbon, gpu_share
from tests.support.policy import Row, node_table

GIB = 2**30


def ctx(
    pod: PodDemand,
    rows: Sequence[Row],
    view: FixedView,
    *,
    power: PowerModel | None = None,
    hours: float = 1.0,
) -> Context:
    return Context(
        pod=pod,
        table=node_table(rows),
        carbon=view,
        power=power or PowerModel(),
        now_s=0.0,
        duration_s=hours * 3600,
        signal="average",
    )


def emissions(c: Context) -> TermScore:
    """The carbon term's scores with a class's default settings (range normalisation)."""
    return Carbon().score(c, TermArgs())


def one_gpu_pod() -> PodDemand:
    return PodDemand(
        uid="u",
        namespace="ml",
        name="p",
        gpus=1,
        gpu_milli=1000,
        cpu_milli=8000,
        mem_bytes=32 * GIB,
    )


def test_h100_in_dirtier_zone_beats_t4_in_cleaner_zone() -> None:
    """By hand, with the built-in table (H100 560 W x2.0, T4 60 W x0.2), PUE 1.2, 1 h job:

    CPU + memory: 8 cores x 4 W + 32 GiB x 0.375 W = 44 W.
    H100: run 0.5 h; (560 + 44) W x 1.2 x 0.5 h = 0.3624 kWh x 300 g/kWh = 108.72 g.
    T4:   run 5 h;   (60 + 44) W x 1.2 x 5 h   = 0.624 kWh  x 200 g/kWh = 124.80 g.
    """
    rows = [
        ("h100", "DIRTY", "r1", "NVIDIA-H100-80GB-HBM3", 8),
        ("t4", "CLEAN", "r2", "Tesla-T4", 4),
    ]
    ts = emissions(ctx(one_gpu_pod(), rows, FixedView({"DIRTY": 300.0, "CLEAN": 200.0})))
    assert ts.unit == "gCO2e"
    assert ts.raw.tolist() == pytest.approx([108.72, 124.80])
    assert ts.normalized.tolist() == [1.0, 0.0]
    assert ts.detail["intensity"].tolist() == [300.0, 200.0]
    assert ts.carbon_data == {
        "DIRTY": ZoneData(source="test", age_s=0.0, stale=False, g_per_kwh=300.0),
        "CLEAN": ZoneData(source="test", age_s=0.0, stale=False, g_per_kwh=200.0),
    }


def test_forecast_mean_over_each_nodes_own_run() -> None:
    """The H100 runs 1 h (mean of hour 0), the A100 2 h (mean of hours 0 and 1).

    A100 (320 W, x1.0), 2 h job, 1 GPU, no CPU/memory; PUE 1.0:
    H100: 560 W x 1 h = 0.56 kWh x 100 = 56.0 g (hour 0 only).
    A100: 320 W x 2 h = 0.64 kWh x mean(100, 500) = 0.64 x 300 = 192.0 g.
    """
    pod = PodDemand(uid="u", namespace="ml", name="p", gpus=1, gpu_milli=1000)
    rows = [("h", "Z", "r", "NVIDIA-H100", 8), ("a", "Z", "r", "NVIDIA-A100-SXM4-80GB", 8)]
    view = FixedView({"Z": 999.0}, {"Z": [100.0, 500.0]})
    ts = emissions(ctx(pod, rows, view, power=PowerModel(pue=1.0), hours=2.0))
    assert ts.raw.tolist() == pytest.approx([56.0, 192.0])


def test_fractions_mig_and_site_pue() -> None:
    """A 250-milli share of an A100 counts 0.25 GPU; a 3g.40gb MIG slice 3/7 of one."""
    power = PowerModel(pue=1.5, pueByZone={"Z": 1.1}, pueByRegion={"site-a": 1.4})
    shared = PodDemand(uid="u", namespace="n", name="p", gpus=1, gpu_milli=250)
    mig = PodDemand(uid="u", namespace="n", name="p", mig={"3g.40gb": 1})
    assert gpu_share(shared) == 0.25
    assert gpu_share(mig) == pytest.approx(3 / 7)
    rows = [
        ("a", "Z", "site-a", "NVIDIA-A100-SXM4-80GB", 8),  # PUE by region 1.4
        ("b", "Z", "site-b", "NVIDIA-A100-SXM4-80GB", 8),  # PUE by zone 1.1
        ("c", "Y", "site-c", "NVIDIA-A100-SXM4-80GB", 8),  # default PUE 1.5
    ]
    view = FixedView({"Z": 100.0, "Y": 100.0})
    ts = emissions(ctx(shared, rows, view, power=power))
    # 320 W x 0.25 = 80 W for 1 h = 0.08 kWh x PUE x 100 g/kWh
    assert ts.raw.tolist() == pytest.approx([11.2, 8.8, 12.0])
    ts = emissions(ctx(mig, rows, view, power=power))
    assert ts.raw[1] == pytest.approx(320 * 3 / 7 / 1000 * 1.1 * 100)


def test_zone_without_data_is_neutral_and_noted() -> None:
    pod = one_gpu_pod()
    rows = [
        ("a", "A", "r", "NVIDIA-A100", 8),
        ("b", "B", "r", "NVIDIA-A100", 8),
        ("x", "NODATA", "r", "NVIDIA-A100", 8),
        ("u", None, "r", "NVIDIA-A100", 8),
    ]
    ts = emissions(ctx(pod, rows, FixedView({"A": 100.0, "B": 300.0})))
    assert np.isfinite(ts.raw[:2]).all() and np.isnan(ts.raw[2:]).all()
    assert ts.normalized.tolist() == pytest.approx([1.0, 0.0, 0.5, 0.5])
    assert pod.notes == [
        "unknown_zone NODATA: no carbon source has a value (no live value, no static row); set "
        "carbon.static: {NODATA: <gCO2e/kWh>} or map the region to a known zone in carbon.zones; "
        "no_zone: 1 node(s) with no grid zone (region label missing or not mapped; see "
        "carbon.zoneLabel / carbon.zones): carbon term scored neutral (the candidates' mean "
        "emissions: neither best nor worst)"
    ]


def test_cpu_pod_is_not_slowed_by_the_gpu_model() -> None:
    pod = PodDemand(uid="u", namespace="n", name="p", cpu_milli=4000, mem_bytes=16 * GIB)
    rows = [("t4", "Z", "r", "Tesla-T4", 4), ("cpu", "Z", "r", "", 0)]
    ts = emissions(ctx(pod, rows, FixedView({"Z": 100.0})))
    # (4 x 4 + 16 x 0.375) W = 22 W, 1 h, PUE 1.2 -> 0.0264 kWh x 100 = 2.64 g on both
    assert ts.raw.tolist() == pytest.approx([2.64, 2.64])


POLICY = """\
apiVersion: lowcarb.dev/v2
kind: Policy
power: {pue: 1.2}
classes:
  carbon-only:
    prices: {gpuHourIdle: 0}       # idle fleet: GPU time free, emissions are the whole cost
  carbon-blind:
    prices: {carbonPerTonne: 0}    # GPU time is the whole cost
    gpuMode: packing
"""


def test_engine_prices_each_class_and_maps_cost_differences_to_levels() -> None:
    engine = Engine(policy_from_text(POLICY))
    rows = [
        ("h100", "DIRTY", "r1", "NVIDIA-H100-80GB-HBM3", 8),
        ("t4", "CLEAN", "r2", "Tesla-T4", 4),
        ("a100", "MID", "r3", "NVIDIA-A100-SXM4-80GB", 8),
    ]
    table = node_table(rows)
    view = FixedView({"DIRTY": 300.0, "CLEAN": 200.0, "MID": 250.0})
    ev = engine.evaluate(one_gpu_pod(), table, view, 0.0, klass="carbon-only")
    # A100: (320 + 44) x 1.2 x 1 h = 0.4368 kWh x 250 = 109.2 g, a whisker worse than the H100
    assert ev.terms["carbon"].raw.tolist() == pytest.approx([108.72, 124.80, 109.2])
    assert ev.cost is not None
    assert ev.cost.cost.tolist() == pytest.approx([g / 1e6 * 190 for g in (108.72, 124.8, 109.2)])
    # the A100 is 0.44 % dearer (within the 2 % indifference): the two are equal, and among
    # equals the GPU term's FGD order gives the one-level nudge (the A100 keeps 10, the H100 9);
    # the T4 14.8 % dearer: round(10 x (1 - 0.148)) = 9. A small difference stays small.
    assert ev.levels.tolist() == [9, 9, 10]
    assert set(ev.terms) == {"gpu_fit", "carbon"}  # the same terms for every class
    ev = engine.evaluate(one_gpu_pod(), table, view, 0.0, klass="carbon-blind")
    assert ev.cost is not None and ev.cost.carbon_usd.tolist() == [0.0, 0.0, 0.0]
    # GPU-hours at $0.005: H100 0.5 h, T4 5 h, A100 1 h -> the A100 is 100 % dearer: level 0
    assert ev.cost.cost.tolist() == pytest.approx([0.0025, 0.025, 0.005])
    assert ev.levels.tolist() == [10, 0, 0]
    assert int(np.argmax(ev.levels)) == int(np.nanargmax(ev.combined))


def test_carbon_normalization_is_gone_and_the_cost_keeps_ratios() -> None:
    """v1's ``carbonNormalization: ratio`` kept small differences small; in v2 the cost does."""
    rows = [
        ("h100", "DIRTY", "r1", "NVIDIA-H100-80GB-HBM3", 8),
        ("t4", "CLEAN", "r2", "Tesla-T4", 4),
    ]
    view = FixedView({"DIRTY": 300.0, "CLEAN": 200.0})
    c = ctx(one_gpu_pod(), rows, view)
    ts = Carbon().score(c, TermArgs())
    assert ts.normalized.tolist() == pytest.approx([1.0, 0.0])  # range: only for carbon-greedy
    _, issues = validate_text(
        "apiVersion: lowcarb.dev/v2\nkind: Policy\nclasses: {a: {carbonNormalization: ratio}}\n",
        "p.yaml",
    )
    assert [i.path for i in issues] == ["classes.a.carbonNormalization"]
    assert "removed in lowcarb.dev/v2" in issues[0].message
    policy = policy_from_text(
        "apiVersion: lowcarb.dev/v2\nkind: Policy\nclasses: {a: {prices: {gpuHourIdle: 0}}}\n"
    )
    ev = Engine(policy).evaluate(one_gpu_pod(), node_table(rows), view, 0.0, klass="a")
    assert ev.cost is not None
    assert ev.cost.cost[1] / ev.cost.cost[0] == pytest.approx(124.80 / 108.72)
    assert ev.levels.tolist() == [10, 9]  # 14.8 % dearer is one level, not the whole range
