"""The embedded static source answers for every zone key lowcarb uses, each row citing its source.

Every zone key of the cloud-region table, of each provider's built-in zone table (WattTime regions,
Carbon Aware SDK Azure locations, ukgrid's GB), of the Electricity Maps fixtures, of the
simulator's default zones, of the replay data set, and the country keys of issue 12 must get a
value from the default chain (static only). The derived rows must still follow from their parts.
"""

from __future__ import annotations

import asyncio
import csv
import json
import statistics
from pathlib import Path

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from typer.testing import CliRunner

from carbon.cache import CarbonCache
from carbon.config import CarbonConfig
from carbon.coverage import builtin_zone_uses
from carbon.datadir import data_dir
from carbon.providers.static import StaticProvider
from carbon.series import portal_root
from carbon.zones import builtin_annual_mean_sources, builtin_annual_means
from scheduler.cli.carbon import app
from scheduler.sim.run import DEFAULT_ZONES
from tests.support.carbon import FIXTURES, LoopbackServer

# Countries that Electricity Maps splits into bidding zones, written as the country key, and
# bidding-zone / data-set names that differ from the Electricity Maps key (issue 12).
COUNTRY_KEYS = ("NO", "SE", "DK", "IT", "JP", "AU")
ALIASES = {"DE-LU": "DE", "BR-SP": "BR-CS", "CL-SIC": "CL-SEN"}

needs_data = pytest.mark.skipif(
    data_dir() is None, reason="shared data dir absent (set LOWCARB_DATA to ../shared/data)"
)


def zone_uses() -> list[tuple[str, str]]:
    """(where, zone key) for every key a lowcarb table, fixture or default uses."""
    uses = [(where, z) for where, keys in builtin_zone_uses().items() for z in sorted(keys)]
    em = json.loads((FIXTURES / "electricitymaps" / "zones.json").read_text())
    uses += [("electricitymaps zones.json fixture", z) for z in sorted(em)]
    uses += [("simulator DEFAULT_ZONES", z) for z in DEFAULT_ZONES]
    uses += [("country key", z) for z in COUNTRY_KEYS]
    uses += [("alias", z) for z in ALIASES]
    return uses


def test_the_enumeration_covers_every_table() -> None:
    where = {w for w, _ in zone_uses()}
    assert {
        "cloud_regions.csv",
        "provider watttime",
        "provider carbonaware",
        "provider ukgrid",
        "simulator DEFAULT_ZONES",
    } <= where
    keys = {z for _, z in zone_uses()}
    assert {"NO", "SE", "DE-LU", "GB", "US-CAL-CISO", "SE-SE3", "IN-WE"} <= keys


@pytest.mark.parametrize(("where", "zone"), zone_uses())
def test_static_answers_every_zone_key_lowcarb_uses(where: str, zone: str) -> None:
    reading = CarbonCache(CarbonConfig()).view().reading(zone)
    assert reading is not None, f"{zone} ({where}) has no static value"
    assert reading.source == "static" and 0 < reading.g_per_kwh < 2000
    assert builtin_annual_mean_sources()[zone]  # and its row cites a source


def test_static_provider_answers_the_country_keys_itself() -> None:
    provider = StaticProvider(CarbonConfig().provider("static"), clock=lambda: 1.7e9)
    points = asyncio.run(provider.latest([*COUNTRY_KEYS, *ALIASES]))
    assert {p.zone for p in points} == {*COUNTRY_KEYS, *ALIASES}


@needs_data
def test_static_answers_every_replay_data_set_zone() -> None:
    folders = sorted(p.name for p in portal_root().iterdir() if p.is_dir())
    assert "DE-LU" in folders and "NO" in folders
    means = builtin_annual_means()
    assert [z for z in folders if z not in means] == []


def test_every_row_cites_its_source_and_derived_rows_follow_from_their_parts() -> None:
    means, sources = builtin_annual_means(), builtin_annual_mean_sources()
    assert set(means) == set(sources)
    base = {z for z, s in sources.items() if s == "eurosys24"}
    assert len(base) == 123
    derived = {z: s for z, s in sources.items() if s != "eurosys24"}
    assert set(derived) == {*COUNTRY_KEYS, *ALIASES}
    for zone, source in derived.items():
        kind, _, arg = source.partition(":")
        if kind == "mean":
            parts = arg.split("+")
            assert len(parts) >= 2 and set(parts) <= base, zone
            assert all(p.startswith(f"{zone}-") for p in parts), zone
            assert means[zone] == round(statistics.fmean(means[p] for p in parts), 1), zone
        elif kind == "alias":
            assert ALIASES[zone] == arg and arg in base
            assert means[zone] == means[arg]
        else:
            assert kind == "portal-mean" and arg == f"{zone}/{zone}_2022_hourly.csv", zone


def test_country_means_are_the_documented_numbers() -> None:
    means = builtin_annual_means()
    expected = {"NO": 38.1, "SE": 23.2, "DK": 180.3, "IT": 454.7, "AU": 405.4, "JP": 506.8}
    assert {z: means[z] for z in expected} == expected
    readme = (Path(__file__).resolve().parents[2] / "carbon" / "data" / "README.md").read_text()
    for zone, value in expected.items():
        assert f"| `{zone}` | {value} |" in readme


@needs_data
def test_rows_match_the_shared_data_they_cite() -> None:
    root = data_dir()
    assert root is not None
    artifact = root / "carbon" / "eurosys24_sukprasert_artifact" / "zone_mean_ci_2020_2022.csv"
    with artifact.open() as fh:
        published = {r["zonecode"]: float(r["2022"]) for r in csv.DictReader(fh)}
    means, sources = builtin_annual_means(), builtin_annual_mean_sources()
    for zone, source in sources.items():
        if source == "eurosys24":
            assert means[zone] == round(published[zone], 1), zone
        elif source.startswith("portal-mean:"):
            path = portal_root() / source.partition(":")[2]
            with path.open(encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
            column = next(c for c in rows[0] if "(LCA)" in c)
            assert rows[0]["Zone Id"] == zone
            assert means[zone] == round(statistics.fmean(float(r[column]) for r in rows), 1)
    for alias, target in ALIASES.items():  # the data set's own files say which zone they hold
        folder = portal_root() / alias
        if folder.is_dir():
            first = next(folder.glob("*_hourly*.csv"))
            with first.open(encoding="utf-8") as fh:
                assert next(csv.DictReader(fh))["Zone Id"] == target


def failing_api() -> list[Route]:
    async def down(request: Request) -> Response:
        return JSONResponse({"error": "upstream unavailable"}, status_code=503)

    return [Route("/v3/carbon-intensity/{rest:path}", down)]


def test_failing_provider_leaves_no_zone_blank(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 12's command: NO and SE were null and the exit code 1."""
    with LoopbackServer(failing_api()) as server:
        monkeypatch.setenv("LOWCARB_ELECTRICITYMAPS_URL", server.url)
        monkeypatch.setenv("LOWCARB_ELECTRICITYMAPS_TOKEN", "test-token")
        args = ["show", "--zones", "DE,FR,GB,NO,ES,SE", "--provider", "electricitymaps"]
        result = CliRunner().invoke(app, [*args, "--fallback", "static", "--json"])
    assert result.exit_code == 0, result.output
    zones = json.loads(result.stdout)["zones"]
    assert list(zones) == ["DE", "FR", "GB", "NO", "ES", "SE"]
    assert all(z["source"] == "static" for z in zones.values())
    assert (zones["NO"]["g_per_kwh"], zones["SE"]["g_per_kwh"]) == (38.1, 23.2)
