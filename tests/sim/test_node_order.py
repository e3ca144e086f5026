"""Node-order draws (scheduler.sim.trace.redraw_names, ``lowcarb simulate --node-order``) and
benchmarks/placement_orders.py: the fixed node order that fgd and lowcarb break near-ties by is
one draw, carbon-greedy does not depend on it, fgd's placements do not depend on the start."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from benchmarks import placement_orders as bench
from carbon.datadir import data_dir
from scheduler.cli.main import app
from scheduler.sim import inputs, replay
from scheduler.sim import run as sim_run
from scheduler.sim.carbon import Integrals
from scheduler.sim.results import SimOptions
from scheduler.sim.trace import TraceError, load_nodes, place_nodes, redraw_names

needs_data = pytest.mark.skipif(
    data_dir() is None or not (data_dir() / "gpu-trace").is_dir(),  # type: ignore[operator]
    reason="shared datasets not found (set LOWCARB_DATA to the folder holding gpu-trace/, carbon/)",
)


def test_a_draw_prefixes_the_names_and_keeps_the_fleet(tmp_path: Path) -> None:
    path = tmp_path / "nodes.csv"
    rows = [f"n{i},64000,262144,{2 if i < 4 else 8},{'P100' if i < 4 else 'G2'}" for i in range(10)]
    path.write_text("sn,cpu_milli,memory_mib,gpu,model\n" + "\n".join(rows) + "\n")
    fleet = place_nodes(load_nodes(path), ["a", "b"], seed=1)
    assert redraw_names(fleet, 0) is fleet  # draw 0: the names as they are
    drawn = redraw_names(fleet, 3)
    assert drawn.names == [f"o3-n{i}" for i in range(10)]
    assert drawn.zone == fleet.zone and drawn.model == fleet.model
    assert drawn.gpus.tolist() == fleet.gpus.tolist()
    order0, order3 = fleet.table(["a", "b"]).name_order(), drawn.table(["a", "b"]).name_order()
    assert not np.array_equal(np.argsort(order0), np.argsort(order3))  # another node order
    with pytest.raises(TraceError, match="--node-order"):
        redraw_names(fleet, -1)


def verdict_draw(lc_t: float, lc_w: float, fgd_w: float, lc_usd: float) -> dict[str, Any]:
    return {"lowcarb": {"tco2e": lc_t, "wait_mean_s": lc_w, "unplaced": 0, "cost_usd": lc_usd},
            "fgd": {"tco2e": 9.0, "wait_mean_s": fgd_w, "unplaced": 0}}  # fmt: skip


def test_the_verdict_is_on_the_draws_means_and_paired_per_draw() -> None:
    cg = {"tco2e": 2.0, "cost_usd": 100.0}
    draws = [verdict_draw(1.8, 0.05, 0.02, 90.0), verdict_draw(2.3, 0.01, 0.04, 120.0)]
    v = bench.cell_verdict(cg, draws)
    assert v["vs_carbon_greedy_pct"] == pytest.approx(2.5)  # mean 2.05 t against 2.0
    assert (v["vs_carbon_greedy_pct_min"], v["vs_carbon_greedy_pct_max"]) == (-10.0, 15.0)
    assert v["draws_above_carbon_greedy"] == 1
    assert (v["wait_mean_s"], v["fgd_wait_mean_s"]) == (0.03, 0.03)
    assert v["wait_le_fgd"] is True  # a tie of the means meets "<="
    assert v["draws_wait_le_fgd"] == 1  # draw 1 only: paired with fgd at the same draw
    assert v["cost_vs_carbon_greedy_pct"] == pytest.approx(5.0)  # mean $105 against $100
    assert v["draws_cost_above_carbon_greedy"] == 1
    rows = [
        {"load_scale": 90.0, "draws": draws, **v},
        {"load_scale": 90.0, "draws": draws[:1], **bench.cell_verdict(cg, draws[:1])},
    ]
    t = bench.tally(rows)["90"]
    assert (t["cells"], t["tco2e_le_carbon_greedy"], t["wait_le_fgd"]) == (2, 1, 1)
    assert (t["draws"], t["draws_above_carbon_greedy"], t["draws_wait_le_fgd"]) == (3, 1, 1)
    assert t["mean_vs_carbon_greedy_pct"] == pytest.approx((2.5 - 10.0) / 2)
    assert t["worst_vs_carbon_greedy_pct"] == pytest.approx(2.5)
    assert (t["cost_le_carbon_greedy"], t["draws_cost_above_carbon_greedy"]) == (1, 1)
    assert t["mean_cost_vs_carbon_greedy_pct"] == pytest.approx((5.0 - 10.0) / 2)
    assert t["worst_cost_vs_carbon_greedy_pct"] == pytest.approx(5.0)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--orders", "0"], "error: --orders: 0"),
        (["--load-scale", "90,fast"], "error: --load-scale: '90,fast'"),
        (["--load-scale", "-3"], "error: --load-scale: '-3'"),
        (["--starts", "02-30"], "error: --starts: '02-30'"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if data_dir() is None:
        pytest.skip("no data directory: the benchmark skips before reading its options")
    with pytest.raises(SystemExit) as stop:
        bench.main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(needle) and "\n" not in err


def placements(opts: SimOptions, policy: str, draw: int, scale: float) -> replay.Placements:
    real, nodes, _ = inputs.load_inputs(opts, scaled=False)
    power = sim_run.power_model(None)
    series = inputs.run_series(opts, real, nodes, power)
    pol = sim_run.build_policies(power, sim_run.lowcarb_policy(None))[policy]
    return replay.simulate(real.scaled(scale), redraw_names(nodes, draw), pol, series, seed=0)


@needs_data
def test_the_draw_moves_fgd_and_not_carbon_greedy_and_fgd_ignores_the_start() -> None:
    opts = SimOptions(pods=300, zones=("NO", "GB"), year=2021, start="2021-01-01")
    fgd0, fgd1 = (placements(opts, "fgd", k, 2560.42) for k in (0, 1))
    assert fgd0.placed.all() and fgd1.placed.all()
    assert not np.array_equal(fgd0.node, fgd1.node)  # near-ties go to other nodes
    cg0, cg1 = (placements(opts, "carbon-greedy", k, 2560.42) for k in (0, 1))
    assert np.array_equal(cg0.node, cg1.node)  # its ties: a seeded hash, never the name
    july = placements(replace(opts, start="2021-07-01"), "fgd", 1, 2560.42)
    assert np.array_equal(july.node, fgd1.node)  # carbon-blind: one run serves every start


@needs_data
def test_the_benchmark_runs_each_draw_and_reuses_fgd_across_starts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--pods", "300", "--zones", "NO,GB", "--year", "2021", "--orders", "2"]
    bench.main([*argv, "--starts", "01-01,07-01", "--load-scale", "2560.42"])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["benchmark"] == "placement_orders" and line["orders"] == 2
    jan, jul = line["cells"]
    assert [d["draw"] for d in jan["draws"]] == [0, 1]
    for a, b in zip(jan["draws"], jul["draws"], strict=True):
        assert a["fgd"]["gpu_hours"] == b["fgd"]["gpu_hours"]  # the same placements ...
        assert a["fgd"]["tco2e"] != b["fgd"]["tco2e"]  # ... under each start's grid
    assert jan["draws"][0]["fgd"]["gpu_hours"] != jan["draws"][1]["fgd"]["gpu_hours"]
    # the reused run, moved to 1 July, is accounted as a fresh fgd run there
    opts = SimOptions(pods=300, zones=("NO", "GB"), year=2021, start="2021-07-01T00:00Z")
    real, nodes, _ = inputs.load_inputs(opts, scaled=False)
    power = sim_run.power_model(None)
    series = inputs.run_series(opts, real, nodes, power)
    prices = sim_run.priced_with(sim_run.build_policies(power, sim_run.lowcarb_policy(None)))
    world = bench.World(series, power, Integrals.of(series), prices)
    fresh = placements(opts, "fgd", 1, 2560.42)
    pods = real.scaled(2560.42)
    assert bench.measure(pods, redraw_names(nodes, 1), fresh, world) == jul["draws"][1]["fgd"]
    for cell in (jan, jul):
        mean = np.mean([d["lowcarb"]["tco2e"] for d in cell["draws"]])
        expect = 100 * (mean / cell["carbon_greedy"]["tco2e"] - 1)
        assert cell["vs_carbon_greedy_pct"] == pytest.approx(expect, abs=0.01)
        usd = np.mean([d["lowcarb"]["cost_usd"] for d in cell["draws"]])
        expect = 100 * (usd / cell["carbon_greedy"]["cost_usd"] - 1)
        assert cell["cost_vs_carbon_greedy_pct"] == pytest.approx(expect, abs=0.01)
        # the one currency: carbon at $190/t plus GPU time at $0.005 per GPU-hour (flat default)
        cg = cell["carbon_greedy"]
        priced = cg["tco2e"] * 190 + cg["gpu_hours"] * 0.005
        assert cg["cost_usd"] == pytest.approx(priced, abs=0.02)
    assert line["summary"]["2560.42"]["cells"] == 2 and line["summary"]["2560.42"]["draws"] == 4


@needs_data
def test_simulate_takes_a_node_order_draw() -> None:
    argv = ["simulate", "--pods", "60", "--zones", "NO,GB", "--policies", "fgd", "-o", "json"]
    result = CliRunner().invoke(app, [*argv, "--node-order", "2"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["node_order"] == 2
    plain = CliRunner().invoke(app, argv)
    assert "node_order" not in json.loads(plain.stdout.strip().splitlines()[-1])
    bad = CliRunner().invoke(app, [*argv, "--node-order", "-1"])
    assert bad.exit_code == 2 and "--node-order" in bad.output
