"""The simulator on the real openb trace and carbon series (skipped without the data directory),
its CLI and ledger round trip, and its input errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from carbon.accounting.report import ReportOptions, build_report
from carbon.datadir import data_dir
from carbon.longrun import TRAILING_S
from carbon.series import SeriesError, load_zone_year
from scheduler.cli.main import app
from scheduler.sim.carbon import load_series, year_start
from scheduler.sim.ledger import write_ledger
from scheduler.sim.run import SimOptions, compare
from scheduler.sim.trace import (
    TraceError,
    load_nodes,
    load_pods,
    place_nodes,
    read_pods,
    resolve_pod_file,
)

needs_data = pytest.mark.skipif(
    data_dir() is None or not (data_dir() / "gpu-trace").is_dir(),  # type: ignore[operator]
    reason="shared datasets not found (set LOWCARB_DATA to the folder holding gpu-trace/, carbon/)",
)


@needs_data
def test_ledger_report_agrees_with_the_simulator(tmp_path: Path) -> None:
    c = compare(SimOptions(pods=150, policies=("lowcarb",)))
    assert list(c.runs) == ["k8s-default", "lowcarb"]
    run = c.runs["lowcarb"]
    rows = write_ledger(c, "lowcarb", tmp_path / "sim.db")
    assert rows == int(run.placements.placed.sum()) == 150
    body = build_report(tmp_path / "sim.db", ReportOptions(group_by=("zone",), format="json"))
    doc = json.loads(body)
    assert doc["totals"]["co2e_location_kg"] == pytest.approx(run.accounting.pod_kg.sum(), 1e-9)
    by_zone = {r["zone"]: r["co2e_location_kg"] for r in doc["rows"]}
    for z, zone in enumerate(c.zones):
        assert by_zone.get(zone, 0.0) == pytest.approx(run.accounting.zone_hour_kg[z].sum(), 1e-6)
    # avoided = k8s-default's emissions of the same pods - lowcarb's (the shipped policy has no
    # market factors: market-based = location-based)
    k8s_kg = c.runs["k8s-default"].accounting.pod_kg.sum()
    assert doc["totals"]["avoided_kg"] == pytest.approx(k8s_kg - run.accounting.pod_kg.sum(), 1e-6)
    assert doc["totals"]["avoided_kg"] > 0
    assert doc["totals"]["co2e_market_kg"] == pytest.approx(doc["totals"]["co2e_location_kg"])
    # the LP bound is below both policies, and the carbon-aware policy saves
    assert c.bound.tco2e <= run.metrics["tco2e"] <= c.runs["k8s-default"].metrics["tco2e"]


@needs_data
def test_cli_prints_the_json_line_last(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["simulate", "--pods", "60", "--policies", "fgd,carbon-greedy", "--seed", "3"]
    )
    assert result.exit_code == 0, result.output
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["benchmark"] == "placement"
    assert line["zones"] == ["NO", "GB", "DE-LU", "US-CAL-CISO", "US-TEX-ERCO", "IN-WE"]
    assert set(line["policies"]) == {"k8s-default", "fgd", "carbon-greedy", "bound"}
    assert set(line["policies"]["bound"]) == {"tco2e", "saved_pct"}
    greedy = line["policies"]["carbon-greedy"]
    assert {"tco2e", "saved_pct", "bound_share", "wait_mean_s", "wait_p95_s"} <= set(greedy)
    assert greedy["saved_pct"] > 50  # NO is an order of magnitude cleaner than the mean zone


@needs_data
def test_lets_wait_awhile_single_zone_with_slack() -> None:
    c = compare(SimOptions(lwa="DE", pods=300, slack_h=24, policies=("shift-only",)))
    assert c.zones == ("DE",)
    assert c.series["DE"].source.startswith("lwa:")
    shift, base = c.runs["shift-only"].metrics, c.runs["k8s-default"].metrics
    assert shift["pods_held"] > 0
    assert shift["tco2e"] < base["tco2e"]
    # one zone: no placement lottery, so the saving is the holds' and the figures add up
    assert shift["tco2e"] == pytest.approx(base["tco2e"] * (1 - shift["shift_saved_pct"] / 100))
    assert shift["shift_saved_batch_pct"] > shift["shift_saved_pct"] > 0
    run = c.runs["shift-only"]
    assert run.expected_saving is not None
    assert run.expected_saving[run.hold_s > 0].min() >= 0.1  # never held below minSaving


@needs_data
def test_unknown_zone_and_trace_are_named() -> None:
    with pytest.raises(SeriesError, match="ATLANTIS"):
        compare(SimOptions(zones=("ATLANTIS",), pods=5))
    with pytest.raises(TraceError, match=r"known: .*default"):
        resolve_pod_file("no-such-trace")
    result = CliRunner().invoke(app, ["simulate", "--pods", "5", "--zones", "NO,ATLANTIS"])
    assert result.exit_code == 2
    assert "ATLANTIS" in result.output


@needs_data
def test_bad_policy_file_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text(
        "apiVersion: lowcarb.dev/v2\nkind: Policy\nclasses:\n  default:\n"
        "    prices: {carbonn: 0.5}\n"
    )
    result = CliRunner().invoke(app, ["simulate", "--pods", "5", "--policy", str(bad)])
    assert result.exit_code == 2
    assert "carbonn" in result.output


def test_trace_without_times_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "multigpu.csv"
    path.write_text("name,cpu_milli,memory_mib,num_gpu,gpu_milli\np0,1000,1024,2,1000\n")
    with pytest.raises(TraceError, match="creation_time, deletion_time"):
        load_pods(path)


def test_bad_rows_are_named_with_their_line(tmp_path: Path) -> None:
    head = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,creation_time,deletion_time\n"
    path = tmp_path / "t.csv"
    path.write_text(head + "p0,1000,1024,1,500,0,10\np1,1000,1024,1,0,5,10\n")
    with pytest.raises(TraceError, match=r"t\.csv:3: gpu_milli must be 1\.\.1000"):
        load_pods(path)
    path.write_text(head + "p0,1000,1024,1,500,20,10\n")
    with pytest.raises(TraceError, match=r"t\.csv:2: .*deletion >= creation"):
        load_pods(path)
    path.write_text(head + "p1,1000,1024,0,0,30,40\np0,1000,1024,1,500,0,10\n")
    pods = load_pods(path)
    assert pods.names == ["p0", "p1"]  # sorted by arrival
    assert pods.gpu_fraction.tolist() == [0.5, 0.0]


def test_one_loader_reads_traces_with_and_without_times(tmp_path: Path) -> None:
    path = tmp_path / "multigpu.csv"
    path.write_text(
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec\n"
        "p1,1000,1024,2,1000,V100M16|V100M32\np0,500,2048,0,0,\n"
    )
    pods = read_pods(path)  # the FGD protocol's view: file order, no times needed
    assert pods.names == ["p1", "p0"]
    assert pods.mem_bytes.tolist() == [1024 * 2**20, 2048 * 2**20]  # MiB read into bytes
    assert pods.models == [("V100M16", "V100M32"), ()]
    assert pods.total_gpu_milli.tolist() == [2000, 0]
    assert not pods.has_times and np.isnan(pods.arrival).all()
    with pytest.raises(TraceError, match="creation_time, deletion_time"):
        load_pods(path)  # the simulator's view needs them


def test_malformed_cells_are_named_with_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "pods.csv"
    path.write_text("name,cpu_milli,memory_mib,num_gpu,gpu_milli\np0,1000,1024,1,500\np1,x,1,0,0\n")
    with pytest.raises(TraceError, match=r"pods\.csv:3: cpu_milli must be a whole number"):
        read_pods(path)
    nodes = tmp_path / "nodes.csv"
    nodes.write_text("sn,cpu_milli,memory_mib,gpu,model\nn0,64000,262144,-2,P100\n")
    with pytest.raises(TraceError, match=r"nodes\.csv:2: gpu must be a whole number >= 0"):
        load_nodes(nodes)
    nodes.write_text("sn,cpu_milli,gpu,model\nn0,64000,2,P100\n")
    with pytest.raises(TraceError, match=r"missing column.*memory_mib"):
        load_nodes(nodes)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(TraceError, match="cannot read CSV"):
        read_pods(empty)


def test_nodes_are_dealt_evenly_over_zones_per_model(tmp_path: Path) -> None:
    path = tmp_path / "nodes.csv"
    rows = [f"n{i},64000,262144,{2 if i < 4 else 8},{'P100' if i < 4 else 'G2'}" for i in range(10)]
    path.write_text("sn,cpu_milli,memory_mib,gpu,model\n" + "\n".join(rows) + "\n")
    fleet = place_nodes(load_nodes(path), ["a", "b"], seed=1)
    assert fleet.zone.count("a") == fleet.zone.count("b") == 5
    assert fleet.gpu_capacity(["a", "b"]).tolist() == [28.0, 28.0]  # each: 2 P100 + 3 G2 nodes
    table = fleet.table(["b", "a"])  # zone indices follow the order given, not first-seen
    assert table.zones == ["b", "a"]
    assert [table.zones[z] for z in table.zone.tolist()] == fleet.zone


@needs_data
def test_year_selects_the_series_tune_on_one_report_on_another() -> None:
    runs = {
        year: compare(SimOptions(pods=40, year=year, policies=("carbon-greedy",)))
        for year in (2021, 2023)
    }
    for year, c in runs.items():
        assert c.summary()["year"] == year
        assert all(s.source.endswith(f"_{year}_hourly.csv") for s in c.series.values())
    # same pods, same placements by the carbon-blind baseline, different grids
    a, b = (runs[y].runs["k8s-default"] for y in (2021, 2023))
    assert a.placements.node.tolist() == b.placements.node.tolist()
    assert a.metrics["tco2e"] != b.metrics["tco2e"]


@needs_data
def test_the_trailing_history_before_the_year_is_the_previous_year_where_it_exists() -> None:
    lo = year_start(2022)
    got = load_series(["NO"], 2022, lo, lo + 86400)["NO"]
    before = got.starts < lo
    assert got.starts[before][0] <= lo - TRAILING_S  # two weeks of history and more
    prev = load_zone_year("NO", 2021)
    idx = np.searchsorted(prev.starts, got.starts[before])
    assert (got.values[before] == prev.values[idx]).all()  # 2021's own December, not 2022's
    # 2021 has no 2020 file: its own end, wrapped around to before January
    own = load_series(["NO"], 2021, year_start(2021), year_start(2021) + 86400)["NO"]
    assert (own.values[own.starts < year_start(2021)] == prev.values[-int(before.sum()) :]).all()
