"""The ``accounting:`` policy section: market-based factors, measured energy, the settle delay.

Pydantic models validated with the rest of the policy (file:line:column errors). ``settleAfter``
is how long after a pod ends the accountant waits before writing its usage row, which is final
once written: the energy counters of Kepler or DCGM reach Prometheus only at the next scrape (15 s
to a minute or two, plus the sample ``increase()`` needs), so a row written at once would miss the
end of the run. A few minutes covers scrape lag; the intensity history a provider has not
published yet by then is filled with the intensity seen at the decision and counted as estimated
(``estimated_share``); raise ``settleAfter`` (e.g. ``2h``) to wait for late history instead.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from carbon.config import Intensity
from carbon.duration import Duration

DEFAULT_SETTLE_AFTER = "5m"


class PrometheusConfig(BaseModel):
    """Measured energy through Prometheus' HTTP API (``/api/v1/query``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    url: str = Field(description="Prometheus base URL, e.g. http://prometheus.monitoring:9090")
    source: Literal["kepler", "dcgm"] = Field(
        default="kepler",
        description="kepler: kepler_container_joules_total (whole pod); dcgm: GPU energy counter "
        "plus the power model for CPU and memory",
    )
    metric: str | None = Field(default=None, description="Override the counter's metric name")
    namespace_label: str | None = Field(default=None, alias="namespaceLabel")
    pod_label: str | None = Field(default=None, alias="podLabel")
    timeout: Duration = Field(default="10s", validate_default=True, description="Per-query timeout")

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r}: use an http:// or https:// URL of the Prometheus server")
        return value.rstrip("/")


class AccountingPolicy(BaseModel):
    """The ``accounting:`` policy section: market factors, energy measurement, settle delay."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    market_factors: dict[str, Intensity] = Field(
        default_factory=dict,
        alias="marketFactors",
        description="Contractual emission factor per zone (PPAs, green tariffs), gCO2e/kWh",
    )
    residual_mix: dict[str, Intensity] = Field(
        default_factory=dict,
        alias="residualMix",
        description="Residual-mix factor per zone for energy not covered by a contract",
    )
    prometheus: PrometheusConfig | None = None
    settle_after: Duration = Field(
        default=DEFAULT_SETTLE_AFTER,
        validate_default=True,
        alias="settleAfter",
        description="Wait this long after a pod ends before accounting it (rows are final): "
        "covers the scrape lag of energy metrics; later intensity history counts as estimated",
    )
