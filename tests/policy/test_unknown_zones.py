"""Zones no carbon source knows, and marginal classes without a marginal source (issue 12, item 5).

A zone without data gets the named reason ``unknown_zone`` in ``explain`` and in the extender's
decision record, and a neutral carbon score: the candidates' mean emissions, so the node is neither
the best nor the worst carbon choice, is never filtered for it, and the other terms decide. A
class asking for ``signal: marginal`` that is served average data gets an ``average_for_marginal``
note. ``policy validate`` warns about both ahead of time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from carbon.cache import CarbonCache
from carbon.testing import FixedView
from carbon.zones import ZoneMapper
from scheduler.cli.main import app as lowcarb
from scheduler.cluster.state import ClusterState
from scheduler.demand import PodDemand
from scheduler.engine import Engine
from scheduler.extender.records import placement_record
from scheduler.extender.service import Extender
from scheduler.policy.model import Policy
from scheduler.policy.validate import policy_from_text
from tests.support.policy import FIXTURES, fixture_json, node_table

REGION = "topology.kubernetes.io/region"


def policy_text(eu_zone: str) -> str:
    return f"""\
apiVersion: lowcarb.dev/v2
kind: Policy
carbon:
  zones: {{eu-central: {eu_zone}, us-east: US-MIDA-PJM, us-west: US-NW-BPAT}}
classes:
  training:
    selector: {{matchLabels: {{app: train}}}}
    expectedDuration: 4h
"""


def explain_json(tmp_path: Path, eu_zone: str) -> dict[str, Any]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_text(eu_zone))
    args = ["explain", "--pod", str(FIXTURES / "pods-get.json")]
    args += ["--nodes", str(FIXTURES / "nodes-list.json"), "--policy", str(policy)]
    result = CliRunner().invoke(lowcarb, [*args, "--offline", "--json"])
    assert result.exit_code == 0, result.output
    out: dict[str, Any] = json.loads(result.stdout)
    return out


def test_explain_with_the_de_lu_bidding_zone_uses_its_static_row(tmp_path: Path) -> None:
    """Issue 12: ``zones: {eu-central: DE-LU}`` said "no carbon data for zone(s) DE-LU"."""
    result = explain_json(tmp_path, "DE-LU")
    assert result["carbon_data"]["DE-LU"] == {"source": "static", "age_s": 0, "g_per_kwh": 481.5}
    assert not any("unknown_zone" in n or "no carbon data" in n for n in result["notes"])
    euc = next(n for n in result["nodes"] if n["node"] == "euc1-a-gpu")
    # A100 x4 + 56 W CPU/memory, PUE 1.2, 6 h at 481.5 g/kWh
    assert euc["terms"]["carbon"]["raw"] == pytest.approx((4 * 320 + 56) * 1.2 * 6 * 0.4815)


def test_explain_names_an_unknown_zone_and_scores_it_neutral(tmp_path: Path) -> None:
    result = explain_json(tmp_path, "ATLANTIS")
    assert result["carbon_data"]["ATLANTIS"] == {
        "source": None,
        "age_s": None,
        "g_per_kwh": None,
        "reason": "unknown_zone",
    }
    (note,) = [n for n in result["notes"] if n.startswith("unknown_zone ATLANTIS: ")]
    assert "carbon.static: {ATLANTIS: <gCO2e/kWh>}" in note
    assert note.endswith(
        "carbon term scored neutral (the candidates' mean emissions: neither best nor worst)"
    )
    carbon = {
        n["node"]: n["terms"]["carbon"] for n in result["nodes"] if n["feasible"] and n["terms"]
    }
    unknown = carbon.pop("euc1-a-gpu")
    assert unknown["raw"] is None  # no invented emissions
    others = [c["normalized"] for c in carbon.values()]
    assert min(others) < unknown["normalized"] < max(others)
    # the candidates' mean emissions, normalised like the rest (range: least 1, most 0)
    raws = [c["raw"] for c in carbon.values()]
    expected = (max(raws) - float(np.mean(raws))) / (max(raws) - min(raws))
    assert unknown["normalized"] == pytest.approx(expected, abs=1e-4)
    text = CliRunner().invoke(
        lowcarb,
        [
            "explain",
            "--pod",
            str(FIXTURES / "pods-get.json"),
            "--nodes",
            str(FIXTURES / "nodes-list.json"),
            "--policy",
            str(tmp_path / "policy.yaml"),
            "--offline",
        ],
    )
    assert text.exit_code == 0, text.output
    assert "none (unknown_zone)" in text.stdout


def test_decision_record_names_the_unknown_zone() -> None:
    """A recorded kube-scheduler prioritize call through the extender, then the ledger record."""
    policy = policy_from_text(policy_text("ATLANTIS"))
    args = fixture_json("prioritize.args.nodeCacheCapable-false.json")
    engine = Engine(policy)
    view = CarbonCache(policy.carbon).view()  # the embedded static source, as served
    state = ClusterState(zone_of=ZoneMapper.from_config(policy.carbon).zone_for)
    ext = Extender(state=state, engine=lambda: engine, carbon=lambda: view, clock=lambda: 0.0)
    out = json.loads(ext.prioritize(json.dumps(args).encode()))
    scores = {h["Host"]: h["Score"] for h in out}
    decision = ext._memo[args["Pod"]["metadata"]["uid"]]
    row = decision.table.names.index("euc1-a-gpu")
    # neither preferred nor rejected on carbon: priced as the mean emissions of the nodes with
    # data (the other terms of its cost are its own)
    cost = decision.evaluation.cost
    # (prioritize lists only the nodes scoring above 0; kube-scheduler adds 0 for the others)
    assert cost is not None and set(scores) <= set(decision.table.names)
    known = [i for i, z in enumerate(decision.table.zone_names()) if z != "ATLANTIS"]
    grams = decision.evaluation.terms["carbon"].raw
    carbon_price = policy.prices.carbonPerTonne / 1e6
    assert cost.carbon_usd[row] == pytest.approx(float(np.mean(grams[known])) * carbon_price)
    record = placement_record(decision, row, 0.0)
    assert record.zone == "ATLANTIS" and record.intensity_g_per_kwh is None
    assert record.note is not None and "unknown_zone ATLANTIS: no carbon source has a value" in (
        record.note
    )


NEUTRAL_POLICY = policy_from_text(
    """\
apiVersion: lowcarb.dev/v2
kind: Policy
classes:
  carbon-only:
    prices: {gpuHourIdle: 0}
  ceiling:
    prices: {gpuHourIdle: 0}
    constraints: {maxIntensity: 150}
  packing:
    prices: {carbonPerTonne: 0}
    gpuMode: bestfit
"""
)
ROWS = [
    ("clean", "A", "r", "NVIDIA-A100-SXM4-80GB", 8),
    ("dirty", "B", "r", "NVIDIA-A100-SXM4-80GB", 8),
    ("nodata", "ATLANTIS", "r", "NVIDIA-A100-SXM4-80GB", 8),
]
VIEW = FixedView({"A": 100.0, "B": 300.0})


def one_gpu() -> PodDemand:
    return PodDemand(uid="u", namespace="ml", name="p", gpus=1, gpu_milli=1000, cpu_milli=1000)


def test_unknown_zone_is_neither_best_nor_worst_on_carbon() -> None:
    ev = Engine(NEUTRAL_POLICY).evaluate(
        one_gpu(), node_table(ROWS), VIEW, 0.0, klass="carbon-only"
    )
    norm = ev.terms["carbon"].normalized
    assert norm.tolist() == pytest.approx([1.0, 0.0, 0.5])  # mean of 100 and 300 g/kWh nodes
    assert ev.cost is not None
    cost = ev.cost.cost.tolist()  # priced as the mean emissions of the nodes with data
    assert cost[2] == pytest.approx((cost[0] + cost[1]) / 2) and cost[0] < cost[2] < cost[1]
    assert ev.levels.tolist()[0] == 10
    assert ev.best() == 0


def test_unknown_zone_is_not_filtered_by_an_intensity_ceiling() -> None:
    ev = Engine(NEUTRAL_POLICY).evaluate(one_gpu(), node_table(ROWS), VIEW, 0.0, klass="ceiling")
    assert ev.feasible.tolist() == [True, False, True]  # 300 g > 150 g; no data is not "dirty"
    assert ev.best() == 0


def test_other_terms_still_decide_for_a_node_in_an_unknown_zone() -> None:
    table = node_table(ROWS)
    table.gpu_free[2, 1:] = 0  # one GPU left on the node without data: the tightest fit
    ev = Engine(NEUTRAL_POLICY).evaluate(one_gpu(), table, VIEW, 0.0, klass="packing")
    assert ev.terms["gpu_fit"].normalized.tolist()[2] == 1.0
    # carbon-blind: the same GPU time everywhere, so all are equal on cost, and the GPU term's
    # one-level nudge among equals goes to the tightest fit, the node without data
    assert ev.levels.tolist() == [9, 9, 10]
    assert ev.best() == 2  # among equal costs the GPU term's order decides: the tightest fit


MARGINAL = """\
apiVersion: lowcarb.dev/v2
kind: Policy
carbon:
{carbon}
classes:
  spot:
    selector: {{namespaces: [spot]}}
    signal: marginal
  steady:
    selector: {{namespaces: [steady]}}
"""
# a static provider declared with signal: marginal stands in for a MOER source for DE only
MOER_DE = """\
  providers:
    - {name: moer, type: static, signal: marginal, options: {values: {DE: 700}, builtin: false}}
  fallback: [moer, static]"""
MARGINAL_ROWS = [
    ("de", "DE", "r", "NVIDIA-A100-SXM4-80GB", 8),
    ("fr", "FR", "r", "NVIDIA-A100-SXM4-80GB", 8),
]


def marginal_notes(policy: Policy, klass: str) -> list[str]:
    engine = Engine(policy)
    view = CarbonCache(policy.carbon).view()
    ev = engine.evaluate(one_gpu(), node_table(MARGINAL_ROWS), view, 0.0, klass=klass)
    return [n for n in ev.notes if n.startswith("average_for_marginal")]


def test_marginal_class_without_a_marginal_source_gets_a_note() -> None:
    policy = policy_from_text(MARGINAL.format(carbon="  staleAfter: 2h"))
    assert marginal_notes(policy, "spot") == [
        "average_for_marginal: the class asks for the marginal signal but zone(s) DE, FR got "
        "average intensity from static (no marginal source answered); add a provider with "
        "signal: marginal (e.g. watttime) to carbon.providers and carbon.fallback"
    ]
    assert marginal_notes(policy, "steady") == []


def test_marginal_note_names_only_the_zones_served_average() -> None:
    policy = policy_from_text(MARGINAL.format(carbon=MOER_DE))
    (note,) = marginal_notes(policy, "spot")
    assert "zone(s) FR got average intensity from static" in note
