"""The openb trace benchmark: loader, the FGD protocol's workload inflation, bucketing, output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import fragmentation as bench
from carbon.energy import PowerModel
from carbon.series import HourlySeries, load_zone_year
from scheduler.sim.trace import (
    SimNodes,
    SimPods,
    TraceError,
    find_trace_dir,
    load_nodes,
    read_pods,
    resolve_pod_file,
)

needs_trace = pytest.mark.skipif(
    find_trace_dir() is None,
    reason="gpu-trace data not found (set LOWCARB_DATA to the shared data dir)",
)


@needs_trace
def test_loader_reads_the_paper_cluster_and_trace() -> None:
    nodes = load_nodes()
    assert len(nodes.names) == 1213 and int(nodes.gpus.sum()) == 6212
    pods = read_pods(resolve_pod_file("default"))
    assert len(pods) == 8152
    sharing = (pods.gpus == 1) & (pods.gpu_milli < 1000)
    assert (pods.gpu_milli[pods.gpus == 0] == 0).all() and sharing.sum() > 3000


@needs_trace
def test_unknown_trace_lists_the_known_ones() -> None:
    with pytest.raises(TraceError, match="gpushare40"):
        resolve_pod_file("gpushare41")


@needs_trace
def test_inflation_shuffles_then_clones_to_130_percent() -> None:
    pods = read_pods(resolve_pod_file("default"))
    capacity = 6212 * 1000
    order = bench.arrival_order(pods, capacity, np.random.default_rng(42))
    n = len(pods)
    assert sorted(order[:n].tolist()) == list(range(n))  # every trace pod once, shuffled
    assert order[:n].tolist() != list(range(n))
    total = int(pods.total_gpu_milli[order].sum())
    assert 1.3 * capacity - 8000 < total <= 1.3 * capacity


def test_unallocated_is_read_at_the_first_pod_at_or_past_each_level() -> None:
    run = bench.Run(
        policy="p",
        seed=1,
        arrived_pct=np.array([50.0, 79.9, 80.2, 100.0, 131.0]),
        used_pct=np.array([50.0, 79.9, 80.0, 95.0, 96.0]),
        failed=1,
        seconds=0.0,
    )
    assert run.unallocated_at(80) == pytest.approx(20.0)
    assert run.unallocated_at(100) == pytest.approx(5.0)
    assert run.unallocated_at(130) == pytest.approx(4.0)


def test_both_placed_splits_the_common_arrivals_from_the_extra_work() -> None:
    def run(placed: list[bool], kg_per_step: list[float], seed: int = 7) -> bench.Run:
        return bench.Run(
            policy="p",
            seed=seed,
            arrived_pct=np.array([10.0, 20.0, 30.0, 40.0, 120.0]),
            used_pct=np.zeros(5),
            failed=placed.count(False),
            seconds=0.0,
            kg_cum=np.cumsum(kg_per_step),
            placed=np.array(placed),
        )

    # 10 GPUs: each arrival asks for one; the fifth arrives past 100 % and is not counted
    a = run([True, True, False, True, True], [1.0, 2.0, 0.0, 3.0, 50.0])
    b = run([True, False, True, True, True], [2.0, 0.0, 2.0, 1.0, 50.0])
    d = bench.both_placed(a, b, capacity_gpus=10.0, level=40.0)
    assert d["both_pods"] == 2
    assert d["both_tco2e_a"] == pytest.approx(0.004) and d["both_tco2e_b"] == pytest.approx(0.003)
    assert (d["only_a_pods"], d["only_a_gpus"]) == (1, pytest.approx(1.0))
    assert d["only_a_tco2e"] == pytest.approx(0.002)
    assert (d["only_b_pods"], d["only_b_gpus"], d["only_b_tco2e"]) == (1, 1.0, 0.002)
    with pytest.raises(ValueError, match="share a seed"):
        bench.both_placed(a, run([True] * 5, [1.0] * 5, seed=8), capacity_gpus=10.0)


def test_authors_scoring_transforms() -> None:
    ts = bench.TermScore(raw=np.array([0.0, -1.0, 2.0]), normalized=np.zeros(3), unit="GPUs")
    assert bench.fgd_plugin(ts).tolist() == [50.0, 73.0, 11.0]
    fit = bench.TermScore(raw=np.array([0.905, 0.5, 0.2]), normalized=np.zeros(3), unit="")
    assert bench.bestfit_plugin(fit).tolist() == [100.0, 42.0, 0.0]


@needs_trace
def test_main_prints_the_table_then_the_json_line_last(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench, "OUT_DIR", tmp_path)
    code = bench.main(["--seeds", "1", "--policies", "random,bestfit", "--jobs", "1"])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[1].split()[:3] == ["policy", "80%", "90%"]
    result = json.loads(lines[-1])
    assert result["benchmark"] == "fragmentation" and result["trace"] == "default"
    assert result["seeds"] == 1
    assert set(result["unallocated_pct"]) == {"random", "bestfit"}
    for curve in result["unallocated_pct"].values():
        assert list(curve) == ["80", "90", "95", "100", "110", "130"]
        assert all(0 <= v <= 100 for v in curve.values())
    # best fit strands fewer GPUs than random placement once the cluster is full
    assert result["unallocated_pct"]["bestfit"]["130"] < result["unallocated_pct"]["random"]["130"]
    assert (tmp_path / "fragmentation_default.png").stat().st_size > 0


def test_bad_policy_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench.main(["--policies", "fgd,magic"])
    assert "magic" in capsys.readouterr().err


def test_carbon_world_emissions_by_hand() -> None:
    t0 = 1_640_995_200.0  # 2022-01-01T00:00:00Z
    hours = np.asarray(t0 + 3600.0 * np.arange(48), dtype=np.float64)
    dirty = np.asarray(np.tile([500.0, 300.0], 24), dtype=np.float64)
    series = {
        "clean": HourlySeries("clean", hours, np.full(48, 50.0), 3600.0, "test"),
        "dirty": HourlySeries("dirty", hours, dirty, 3600.0, "test"),
    }
    power = PowerModel.model_validate(
        {
            "builtinGpus": False,
            "gpus": [
                {"match": "^G2$", "watts": 250, "relativeSpeed": 1.0},
                {"match": "^T4$", "watts": 60, "relativeSpeed": 0.5},
            ],
            "cpuWattsPerCore": 4.0,
            "memoryWattsPerGiB": 0.0,
            "pue": 1.5,
        }
    )
    fleet = SimNodes(
        names=["t4", "g2"],
        cpu_milli=np.array([8000, 8000], dtype=np.int64),
        mem_bytes=np.array([2**35, 2**35], dtype=np.int64),
        gpus=np.array([1, 1], dtype=np.int64),
        model=["T4", "G2"],
        zone=["clean", "dirty"],
    )
    world = bench.CarbonWorld(fleet, series, power, t0)
    pods = SimPods(
        names=["a", "b", "c"],
        cpu_milli=np.array([1000, 2000, 500], dtype=np.int64),
        mem_bytes=np.zeros(3, dtype=np.int64),
        gpus=np.array([1, 1, 0], dtype=np.int64),
        gpu_milli=np.array([500, 1000, 0], dtype=np.int64),
        models=[(), (), ()],
        qos=["LS"] * 3,
        arrival=np.array([0.0, 1800.0, 0.0]),
        duration=np.array([3600.0, 3600.0, 7200.0]),
    )
    kg = world.emissions_kg(pods, np.array([0, 1, 2]), np.array([0, 1, 1]))
    # a: half a T4 (30 W) + 1 core (4 W) for 2 h at half speed, x1.5, at 50 g
    # b: a G2 (250 W) + 2 cores, 1 h from 00:30: half at 500 g, half at 300 g
    # c: CPU-only, 0.5 core (2 W) for 2 h (no GPU slowdown) at 500 then 300 g
    assert kg.tolist() == pytest.approx(
        [
            34 * 1.5 * 2 / 1000 * 50 / 1000,
            258 * 1.5 / 1000 * 400 / 1000,
            2 * 1.5 * 2 / 1000 * 400 / 1000,
        ]
    )


@needs_trace
def test_carbon_mode_places_by_zone_and_reports_tco2e(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench, "OUT_DIR", tmp_path)
    nodes = tmp_path / "nodes.csv"
    rows = [f"n{i},64000,262144,1,G2" for i in range(10)]
    nodes.write_text("sn,cpu_milli,memory_mib,gpu,model\n" + "\n".join(rows) + "\n")
    trace = tmp_path / "pods.csv"
    trace.write_text(  # one 1-GPU pod for an hour at the trace start, cloned to 130 % (13 pods)
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli,creation_time,deletion_time\n"
        "p0,4000,8192,1,1000,0,3600\n"
    )
    argv = ["--seeds", "1", "--policies", "random", "--jobs", "1", "--trace", str(trace)]
    argv += ["--nodes", str(nodes)]
    assert bench.main([*argv, "--carbon", "--zones", "NO,IN-WE", "--year", "2022"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (
        set(line["tco2e"]) == set(line["unallocated_pct"]) == {"random", "carbon-greedy", "lowcarb"}
    )
    assert line["zones"] == ["NO", "IN-WE"] and line["year"] == 2022
    # each pod: (250 W + 4 cores x 4 W + 8 GiB x 0.375 W) x PUE 1.2 for the first hour of 2022
    kwh = (250 + 16 + 3) * 1.2 / 1000
    g = {z: float(load_zone_year(z, 2022).values[0]) for z in ("NO", "IN-WE")}
    # at 80 % arrived 8 pods run: carbon-greedy fills NO's 5 GPUs first, then 3 in IN-WE
    greedy = line["tco2e"]["carbon-greedy"]
    assert greedy["80"] == pytest.approx((5 * g["NO"] + 3 * g["IN-WE"]) * kwh / 1e6, abs=1e-4)
    assert line["tco2e"]["random"]["80"] >= greedy["80"] - 1e-4
    assert greedy["100"] == pytest.approx(5 * (g["NO"] + g["IN-WE"]) * kwh / 1e6, abs=1e-4)
    assert (tmp_path / "fragmentation_carbon_pods.png").stat().st_size > 0
    # carbon changes nothing for the GPU-only policies
    assert bench.main(argv) == 0
    plain = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "tco2e" not in plain
    assert plain["unallocated_pct"]["random"] == line["unallocated_pct"]["random"]


def test_carbon_policies_need_carbon(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench.main(["--policies", "fgd,lowcarb"])
    assert "--carbon" in capsys.readouterr().err


@needs_trace
def test_carbon_mode_without_the_years_series_names_the_zones_that_have_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    trace = find_trace_dir()
    if trace is None or not (trace.parent / "carbon" / "electricitymaps_portal" / "NO").is_dir():
        pytest.skip("carbon series not found beside the trace (set LOWCARB_DATA)")
    argv = ["--seeds", "1", "--policies", "random", "--jobs", "1", "--carbon"]
    assert bench.main([*argv, "--zones", "NO,FR", "--year", "2023"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: --zones/--year: ")
    listed = err.split("zones with a 2023 series: ")[1].split(";")[0].split(",")
    assert "NO" in listed and "FR" not in listed
    assert err.endswith("give zones and a --year that the data holds")
