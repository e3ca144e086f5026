"""Prometheus counters of the accountant: pods accounted and their emissions, by zone.

``lowcarb_accounted_pods_total{zone}`` counts usage rows this process wrote;
``lowcarb_accounted_emissions_grams_total{zone,basis}`` adds each row's location-based emissions
(``basis="location"``, what the pods emitted) and its carbon-unaware counterfactual
(``basis="counterfactual"``, what they would have emitted under kube-scheduler alone). Emissions
avoided are the difference of the two; it can be negative, which one counter could not carry.
Rows are counted once, by the process whose write created them, so replicas sum correctly.

``increase()`` cannot see the first increment of a series that did not exist before, so the
serving process creates the series of every zone it knows at 0 ahead of time (:func:`expect`).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter

from carbon.accounting.records import UsageRecord

ACCOUNTED_PODS = Counter(
    "lowcarb_accounted_pods_total",
    "Finished pods turned into usage rows (energy, emissions) by this process, by grid zone",
    ["zone"],
)
EMISSIONS = Counter(
    "lowcarb_accounted_emissions_grams_total",
    "gCO2e of accounted pods by zone: basis=location (emitted) and basis=counterfactual "
    "(carbon-unaware placement and start); avoided = counterfactual - location",
    ["zone", "basis"],
)
UNKNOWN_ZONE = "unknown"


def expect(zones: Iterable[str]) -> None:
    """Create the series of these zones at 0, so that their first accounted pod is an increase."""
    for zone in (*zones, UNKNOWN_ZONE):
        ACCOUNTED_PODS.labels(zone=zone)
        for basis in ("location", "counterfactual"):
            EMISSIONS.labels(zone=zone, basis=basis)


def count_usage(record: UsageRecord) -> None:
    """Count a usage row just written to the ledger (not one another replica wrote)."""
    zone = record.zone or UNKNOWN_ZONE
    ACCOUNTED_PODS.labels(zone=zone).inc()
    EMISSIONS.labels(zone=zone, basis="location").inc(max(record.co2e_location_kg, 0.0) * 1000.0)
    EMISSIONS.labels(zone=zone, basis="counterfactual").inc(
        max(record.counterfactual_kg, 0.0) * 1000.0
    )
