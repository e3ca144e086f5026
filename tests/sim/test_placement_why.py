"""benchmarks/placement_why.py: each decision's excess carbon is charged to the cost part that
saved the most USD (GPU time, the FGD delta, the fill order), or to the band / carbon-optimal."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.placement_why import cause_of


def test_the_part_that_saved_most_is_named() -> None:
    # (excess g, level of the least-gCO2e node, d gpu, d fgd, d fill, same model, same zone)
    assert cause_of((5.0, 3, -0.01, -0.02, -0.30, False, False)).startswith("fill-order price")
    assert cause_of((5.0, 3, -0.01, -0.20, 0.10, True, False)).startswith("fgd price")
    assert cause_of((5.0, 3, -0.05, 0.0, -0.01, False, True)) == (
        "gpu-time price, other model, same zone"
    )


def test_band_optimal_and_other() -> None:
    assert cause_of((0.0, 3, -1.0, -1.0, -1.0, True, True)).startswith("carbon-optimal")
    assert cause_of((5.0, 10, -1.0, 0.0, 0.0, True, True)).startswith("in band")
    assert cause_of((5.0, 3, 0.01, 0.0, 0.02, True, True)).startswith("other")


def test_accounted_kg_split_by_run_time() -> None:
    import numpy as np

    from benchmarks.placement_why import duration_split

    dur = np.array([60.0, 7200.0, 3 * 86400.0, 30 * 86400.0, 40 * 86400.0])
    split = duration_split(dur, np.array([1.0, 2.0, 3.0, 4.0, 5.0]), np.array([1, 1, 1, 1, 1.0]))
    assert [row["pods"] for row in split.values()] == [1, 1, 1, 2]
    assert split[">= 1 w"] == {"pods": 2, "carbon-greedy": 9.0, "lowcarb": 2.0}
    assert split["< 1 h"]["carbon-greedy"] == 1.0


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--start", "1 July"], "error: --start: '1 July' is not a date"),
        (["--load-scale", "1,fast"], "error: --load-scale: '1,fast'"),  # was a traceback
    ],
)
def test_a_bad_option_is_one_line_and_exit_2(
    argv: list[str],
    needle: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from benchmarks import placement_why
    from carbon.datadir import data_dir

    if data_dir() is None:
        pytest.skip("no data directory: the benchmark skips before reading its inputs")
    monkeypatch.setattr("sys.argv", ["placement_why.py", *argv])
    with pytest.raises(SystemExit) as stop:
        placement_why.main()
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(needle) and "\n" not in err


def test_a_broken_policy_is_one_line_naming_the_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks import placement_why
    from carbon.datadir import data_dir

    if data_dir() is None:
        pytest.skip("no data directory: the benchmark skips before reading its inputs")
    bad = tmp_path / "policy.yaml"
    bad.write_text("apiVersion: lowcarb.dev/v2\nkind: Policy\nprices: {carbonPerTonne: -5}\n")
    monkeypatch.setattr("sys.argv", ["placement_why.py", "--policy", str(bad)])
    with pytest.raises(SystemExit) as stop:
        placement_why.main()
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "prices.carbonPerTonne" in err and str(bad) in err
