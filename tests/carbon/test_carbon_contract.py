"""Contract tests over the provider registry: every type has tests and honours the protocol.

A new provider registered with ``@provider`` (or via the ``lowcarb.carbon_providers`` entry point
group) fails here until it is added to ``COVERED`` with a test module and a fixture-backed
transport that makes ``latest`` return a valid point.
"""

from __future__ import annotations

import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from carbon.cache import CarbonCache
from carbon.config import CarbonConfig, ProviderConfig
from carbon.datadir import data_dir
from carbon.providers import base
from carbon.providers.base import Provider, create_provider, registry
from carbon.types import IntensityPoint
from tests.support.carbon import Recorder, json_response

HERE = Path(__file__).resolve().parent

# type -> (test module, zone, config overrides, routes, clock)
COVERED: dict[str, tuple[str, str, dict[str, object], dict[str, httpx.Response], float]] = {
    "electricitymaps": (
        "test_provider_electricitymaps.py",
        "DE",
        {},
        {
            "/v3/carbon-intensity/latest": json_response(
                "electricitymaps/carbon-intensity-latest.json"
            )
        },
        datetime(2023, 6, 15, tzinfo=UTC).timestamp(),
    ),
    "watttime": (
        "test_provider_watttime.py",
        "US-CAL-CISO",
        {"signal": "marginal"},
        {
            "/login": json_response("watttime/login.json"),
            "/v3/forecast": json_response("watttime/forecast.json"),
        },
        datetime(2024, 6, 18, 18, 41, tzinfo=UTC).timestamp(),
    ),
    "ukgrid": (
        "test_provider_ukgrid.py",
        "GB",
        {},
        {"/intensity": json_response("uk-carbon-intensity/intensity.json")},
        datetime(2023, 3, 14, 3, 40, tzinfo=UTC).timestamp(),
    ),
    "carbonaware": (
        "test_provider_carbonaware.py",
        "US-MIDA-PJM",
        {"url": "http://casdk.test"},
        {"/emissions/bylocations": json_response("carbon-aware-sdk/emissions-bylocation.json")},
        datetime(2024, 6, 17, 0, 12, tzinfo=UTC).timestamp(),
    ),
    "static": ("test_provider_static_replay.py", "FR", {}, {}, 1.7e9),
    "replay": ("test_provider_static_replay.py", "DE", {"options": {"year": 2023}}, {}, 1.7e9),
}


@pytest.mark.parametrize("type_name", sorted(registry()))
def test_every_registered_provider_has_tests(type_name: str) -> None:
    assert type_name in COVERED, f"provider {type_name!r} has no contract entry and no tests"
    assert (HERE / COVERED[type_name][0]).is_file()


@pytest.mark.parametrize("type_name", sorted(COVERED))
async def test_provider_honours_protocol(type_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _module, zone, overrides, routes, now = COVERED[type_name]
    if type_name == "replay" and data_dir() is None:
        pytest.skip("shared data dir absent (set LOWCARB_DATA to ../shared/data)")
    monkeypatch.setenv("LOWCARB_WATTTIME_USERNAME", "u")
    monkeypatch.setenv("LOWCARB_WATTTIME_PASSWORD", "p")
    config = ProviderConfig.model_validate(
        {"name": f"my-{type_name}", "type": type_name, **overrides}
    )
    prov = create_provider(config, transport=Recorder(dict(routes)).transport(), clock=lambda: now)
    assert isinstance(prov, Provider)
    assert prov.name == f"my-{type_name}"
    points = await prov.latest([zone])
    assert len(points) == 1
    p = points[0]
    assert isinstance(p, IntensityPoint) and p.zone == zone
    assert p.start.tzinfo is not None and p.end > p.start
    assert 0 <= p.g_per_kwh <= 2000
    assert p.kind in ("average", "marginal") and p.factor in ("lifecycle", "direct")
    await prov.aclose()


async def test_third_party_provider_via_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "lowcarb_fake_plugin.py").write_text(
        textwrap.dedent(
            """
            from datetime import timedelta
            from carbon.types import IntensityPoint
            from carbon.providers.base import utc

            class Fixed:
                def __init__(self, config, *, transport=None, clock=None):
                    self.name, self.config, self.clock = config.name, config, clock

                async def latest(self, zones):
                    now = utc(self.clock())
                    return [IntensityPoint(z, now, now + timedelta(hours=1), 42.0) for z in zones]

                async def forecast(self, zone, start, end):
                    return []

                async def history(self, zone, start, end):
                    return []

                async def aclose(self):
                    pass
            """
        )
    )
    dist = tmp_path / "lowcarb_fake_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: lowcarb-fake-plugin\nVersion: 1.0\n"
    )
    (dist / "entry_points.txt").write_text(
        "[lowcarb.carbon_providers]\nfixed42 = lowcarb_fake_plugin:Fixed\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(base, "_entry_points_loaded", False)
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    try:
        assert "fixed42" in registry()
        cfg = CarbonConfig.model_validate(
            {"providers": [{"name": "fixed42"}], "fallback": ["fixed42", "static"]}
        )
        cache = CarbonCache(cfg, clock=lambda: 1.7e9, zones=["DE"])
        snap = await cache.refresh_once()
        reading = snap.reading("DE")
        assert reading is not None and (reading.source, reading.g_per_kwh) == ("fixed42", 42.0)
        await cache.stop()
    finally:
        sys.modules.pop("lowcarb_fake_plugin", None)
