"""benchmarks/placement_starts.py: the loaded comparison repeated at several start dates, each
level's time-scale factor searched once and reused, and the per-level tally of the targets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import placement_starts as bench
from carbon.datadir import data_dir

needs_data = pytest.mark.skipif(
    data_dir() is None or not (data_dir() / "gpu-trace").is_dir(),  # type: ignore[operator]
    reason="shared datasets not found (set LOWCARB_DATA to the folder holding gpu-trace/, carbon/)",
)


def test_starts_are_dates_of_the_year_in_utc() -> None:
    assert bench.parse_starts("01-01, 07-01T12:30", 2021) == [
        "2021-01-01T00:00Z",
        "2021-07-01T12:30Z",
    ]
    assert bench.parse_starts("02-29", 2024) == ["2024-02-29T00:00Z"]
    assert bench.short_start("2021-07-01T12:30Z") == "07-01 12:30"
    assert bench.short_start("2021-10-01T00:00Z") == "10-01"


@pytest.mark.parametrize(
    ("text", "needle"),
    [("02-29", "'02-29' is not a date in 2021"), ("1-1", "'1-1'"), ("01-01,01-01", "twice")],
)
def test_a_bad_start_names_the_option_and_the_form(text: str, needle: str) -> None:
    with pytest.raises(ValueError, match="--starts") as err:
        bench.parse_starts(text, 2021)
    assert needle in str(err.value)


def level(load: str, lc: float, cg: float, wait: float, fgd_wait: float) -> dict[str, Any]:
    return {
        "load": load,
        "policies": {
            "k8s-default": {"tco2e": 3.0, "wait_mean_s": 0.0, "gpu_hours": 100.0},
            "fgd": {"tco2e": 4.0, "wait_mean_s": fgd_wait, "gpu_hours": 150.0},
            # cost_usd: a currency of $100 per tonne and $1 per GPU-hour
            "carbon-greedy": {
                "tco2e": cg,
                "wait_mean_s": 0.0,
                "gpu_hours": 95.0,
                "cost_usd": 100 * cg + 95,
            },
            "lowcarb": {
                "tco2e": lc,
                "wait_mean_s": wait,
                "gpu_hours": 90.0,
                "cost_usd": 100 * lc + 90,
                "unplaced_placed_by_others": 2.0 if load == "90" else 0.0,
            },
        },
    }


def test_tally_counts_the_starts_meeting_each_target() -> None:
    rows = [
        {"start": "a", "levels": [level("90", 1.0, 1.1, 0.05, 0.02), level("60", 2.0, 2.0, 0, 0)]},
        {"start": "b", "levels": [level("90", 1.2, 1.0, 0.02, 0.02), level("60", 1.0, 2.0, 0, 0)]},
    ]
    t = bench.tally(rows)
    assert t["90"]["starts"] == 2 and t["90"]["tco2e_le_carbon_greedy"] == 1
    assert t["90"]["worst_vs_carbon_greedy_pct"] == 20.0
    assert t["90"]["mean_vs_carbon_greedy_pct"] == pytest.approx((-9.09 + 20.0) / 2, abs=0.01)
    assert t["90"]["wait_le_fgd"] == 1 and t["90"]["gpu_h_ratio_max"] == 0.9
    assert t["60"]["tco2e_le_carbon_greedy"] == 2  # a tie meets "<="
    assert t["60"]["mean_vs_carbon_greedy_pct"] == -25.0
    assert t["90"]["unplaced_placed_by_others"] == 4 and t["60"]["unplaced_placed_by_others"] == 0
    # the one currency: 90 % $190 against $205 and $210 against $195; 60 % $290 / $295, $190 / $295
    assert t["90"]["cost_le_carbon_greedy"] == 1 and t["60"]["cost_le_carbon_greedy"] == 2
    expect = (100 * (190 / 205 - 1) + 100 * (210 / 195 - 1)) / 2
    assert t["90"]["mean_cost_vs_carbon_greedy_pct"] == pytest.approx(expect, abs=0.01)


def test_bad_input_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    if data_dir() is None:
        pytest.skip("no data directory: the benchmark skips before reading its options")
    with pytest.raises(SystemExit) as stop:
        bench.main(["--starts", "13-01", "--year", "2021"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --starts: '13-01'") and "\n" not in err


@needs_data
def test_each_start_reuses_the_scale_and_sees_its_own_grid(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--pods", "200", "--zones", "NO,GB", "--year", "2021", "--load-levels", "real,2"]
    bench.main([*argv, "--starts", "01-01,07-01T12:00"])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    first, second = line["starts"]
    assert [first["start"], second["start"]] == ["2021-01-01T00:00Z", "2021-07-01T12:00Z"]
    assert [lv["load"] for lv in second["levels"]] == ["real", "2"]
    for a, b in zip(first["levels"], second["levels"], strict=True):
        assert a["load_scale"] == b["load_scale"]  # searched at the first start, reused
        ka, kb = a["policies"]["k8s-default"], b["policies"]["k8s-default"]
        assert ka["gpu_hours"] == kb["gpu_hours"]  # carbon-blind: the same placements
        assert ka["tco2e"] != kb["tco2e"]  # another moment of the grid
        assert ka["cost_usd"] == pytest.approx(ka["carbon_usd"] + ka["gpu_usd"], abs=0.02)
        assert ka["carbon_usd"] == pytest.approx(ka["tco2e"] * 190.0, rel=1e-3)  # $190 per tonne
    assert first["levels"][1]["load_scale"] > 1.0
    real = [row["levels"][0]["policies"] for row in (first, second)]
    met = sum(p["lowcarb"]["cost_usd"] <= p["carbon-greedy"]["cost_usd"] for p in real)
    assert line["summary"]["real"]["cost_le_carbon_greedy"] == met
    assert line["summary"]["real"]["starts"] == 2 and line["trace"] == "first 200"


@needs_data
def test_a_broken_policy_is_one_line_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "policy.yaml"
    bad.write_text("apiVersion: lowcarb.dev/v2\nkind: Policy\nprices: {carbonPerTonne: -5}\n")
    argv = ["--pods", "200", "--zones", "NO,GB", "--load-levels", "real", "--policy", str(bad)]
    with pytest.raises(SystemExit) as stop:
        bench.main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: invalid policy") and "prices.carbonPerTonne" in err
    assert str(bad) in err
