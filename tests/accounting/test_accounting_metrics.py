"""The accountant's Prometheus counters: each usage row it writes is counted once, by zone, with
its location-based and counterfactual emissions (avoided = their difference)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from carbon.accounting.accountant import Accountant
from carbon.accounting.ledger import Ledger, UsageRecord, open_reader, read_records
from tests.support.ledger import ListHistory, placement, run

START = datetime(2023, 6, 14, tzinfo=UTC).timestamp()


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def emitted(zone: str, basis: str) -> float:
    return sample("lowcarb_accounted_emissions_grams_total", zone=zone, basis=basis)


async def test_counters_follow_the_rows_written_once(tmp_path: Path) -> None:
    zones = ("metrics-DE", "metrics-FR")
    before = {(z, b): emitted(z, b) for z in zones for b in ("location", "counterfactual")}
    pods_before = {z: sample("lowcarb_accounted_pods_total", zone=z) for z in zones}
    ledger = Ledger(tmp_path / "l.sqlite")
    # two pods in one zone, one in another; the first beat the carbon-unaware mean, the last
    # did worse (avoided < 0)
    for i, zone, used, mean in ((0, zones[0], 200.0, 300.0), (1, zones[0], 100.0, 150.0),
                                (2, zones[1], 90.0, 60.0)):  # fmt: skip
        await ledger.append_async(
            placement(
                i,
                START,
                zone=zone,
                intensity_g_per_kwh=used,
                counterfactual_g_per_kwh=mean,
                counterfactual_kg=None,  # the ratio of intensities decides
                expected_kg=None,
            )
        )
        for record in run(f"uid-{i:06d}", START + 60, START + 3660):
            await ledger.append_async(record)
    with ledger:
        assert await Accountant(ledger, ListHistory({})).account_pending() == 3
        # a second pass and a second replica's accountant write nothing, so count nothing
        assert await Accountant(ledger, ListHistory({})).account_pending() == 0
    reader = open_reader(ledger.path)
    rows = list(read_records(reader, UsageRecord))
    reader.close()
    for zone in zones:
        mine = [u for u in rows if u.zone == zone]
        assert sample("lowcarb_accounted_pods_total", zone=zone) - pods_before[zone] == len(mine)
        location = emitted(zone, "location") - before[zone, "location"]
        counterfactual = emitted(zone, "counterfactual") - before[zone, "counterfactual"]
        assert location == pytest.approx(1000 * sum(u.co2e_location_kg for u in mine))
        assert counterfactual - location == pytest.approx(1000 * sum(u.avoided_kg for u in mine))
    assert location > 0 and counterfactual - location < 0  # the last zone: lowcarb did worse
