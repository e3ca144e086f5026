"""Prometheus metrics of the carbon cache (registered once on the default registry).

``lowcarb_carbon_intensity_g_per_kwh{zone,kind}``, ``lowcarb_carbon_data_age_seconds{zone}``,
``lowcarb_carbon_provider_errors_total{provider,kind}``,
``lowcarb_carbon_fallbacks_total{zone,source}`` and ``lowcarb_carbon_circuit_open{provider}``.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

INTENSITY = Gauge(
    "lowcarb_carbon_intensity_g_per_kwh",
    "Grid carbon intensity currently served per zone (after fallback), gCO2e/kWh.",
    ["zone", "kind"],
)
DATA_AGE = Gauge(
    "lowcarb_carbon_data_age_seconds",
    "Age of the carbon value served per zone (seconds since the interval it describes began).",
    ["zone"],
)
PROVIDER_ERRORS = Counter(
    "lowcarb_carbon_provider_errors_total",
    "Failed carbon provider calls or rejected values, by provider and error kind.",
    ["provider", "kind"],
)
FALLBACKS = Counter(
    "lowcarb_carbon_fallbacks_total",
    "Times a zone switched to being served by a fallback source (one per episode).",
    ["zone", "source"],
)
CIRCUIT_OPEN = Gauge(
    "lowcarb_carbon_circuit_open",
    "1 while the provider's circuit breaker is open after repeated failures.",
    ["provider"],
)


def error_count(provider: str, kind: str) -> float:
    """Current value of the error counter (tests and the CLI use it)."""
    return PROVIDER_ERRORS.labels(provider=provider, kind=kind)._value.get()


def fallback_count(zone: str, source: str) -> float:
    """Current value of the fallback counter."""
    return FALLBACKS.labels(zone=zone, source=source)._value.get()
