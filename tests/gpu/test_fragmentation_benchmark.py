"""The openb trace benchmark: loader, the FGD protocol's workload inflation, bucketing, output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import fragmentation as bench
from scheduler.sim_trace import TraceError, find_trace_dir, load_nodes, read_pods, resolve_pod_file

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
