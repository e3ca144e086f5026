"""The JSON answers of ``/report`` (``format=json`` and ``format=sci``) as pydantic models.

``GET /report`` serves the very bytes ``lowcarb report`` writes (built by
:mod:`carbon.accounting.report`); these models describe them in the OpenAPI contract, and the tests
check real reports against them. The other formats (csv, parquet, png) are listed by media type.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Format = Literal["json", "csv", "parquet", "sci", "png"]
SciUnit = Literal["job", "pod", "gpu-hour"]
MEDIA_TYPES: dict[str, str] = {
    "json": "application/json",
    "csv": "text/csv",
    "parquet": "application/vnd.apache.parquet",
    "png": "image/png",
}


class _Sums(BaseModel):
    """Summed columns (null: no value for a single pod's row, e.g. no counterfactual known)."""

    gpu_hours: float | None
    energy_kwh: float | None = Field(description="kWh at the facility (PUE included)")
    co2e_location_kg: float | None = Field(description="Location-based emissions, kgCO2e")
    co2e_market_kg: float | None = Field(description="Market-based emissions, kgCO2e")
    embodied_kg: float | None = Field(description="Embodied emissions of the GPUs used, kgCO2e")
    counterfactual_kg: float | None = Field(
        description="What a carbon-unaware choice would have emitted, kgCO2e"
    )
    avoided_kg: float | None = Field(description="counterfactual_kg - co2e_location_kg")


class _GroupKeys(BaseModel):
    """The grouping columns (only those of ``group-by`` are present)."""

    namespace: str | None = None
    klass: str | None = Field(default=None, alias="class")
    zone: str | None = None
    node: str | None = None
    day: str | None = Field(default=None, description="UTC day the runs started, YYYY-MM-DD")
    job: str | None = None
    uid: str | None = Field(default=None, description="group-by pod: the pod's UID")
    pod: str | None = Field(default=None, description="group-by pod: namespace/name")


class ReportRow(_GroupKeys, _Sums):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    provisional: bool | None = Field(
        default=None, description="With include-provisional: an estimate awaiting accounting"
    )

    pods: int
    jobs: int
    estimated_share: float = Field(description="Share of co2e_location_kg on estimated data")
    method: str = Field(description="How the energy was measured or estimated, comma-separated")


class SciRow(_GroupKeys, _Sums):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    provisional: bool | None = Field(
        default=None, description="With include-provisional: an estimate awaiting accounting"
    )

    E_kwh: float
    I_g_per_kwh: float = Field(description="Location-based, energy-weighted mean")
    M_g: float = Field(description="Embodied emissions, gCO2e")
    R: float = Field(description="Functional units")
    R_unit: SciUnit
    SCI_g_per_unit: float
    estimated_share: float
    method: str


class AwaitingAccounting(BaseModel):
    """Finished pods the accountant has not settled yet (``accounting.settleAfter``)."""

    model_config = ConfigDict(extra="forbid")

    pods: int
    settle_after: str = Field(description="The policy's accounting.settleAfter, e.g. 5m")
    first_settles_at: str | None = Field(description="ISO 8601; null when none await")
    last_settles_at: str | None = Field(description="ISO 8601; null when none await")
    included_as_provisional: bool = Field(description="include-provisional=true was asked")


class _Meta(BaseModel):
    ledger: str
    start: str | None = Field(alias="from", description="ISO 8601, inclusive; null: no bound")
    end: str | None = Field(alias="to", description="ISO 8601, exclusive; null: no bound")
    group_by: list[str]
    attribution: str
    units: dict[str, str]
    counterfactual: str = Field(description="How counterfactual_kg is defined")
    generated_at: str
    awaiting_accounting: AwaitingAccounting
    provisional: str | None = Field(
        default=None, description="With include-provisional: how provisional rows are estimated"
    )


class Report(_Meta):
    """``format=json``: one row per group, and the column totals."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    rows: list[ReportRow]
    totals: dict[str, float]
    provisional_totals: dict[str, float] | None = None


class SciReport(_Meta):
    """``format=sci``: Software Carbon Intensity per functional unit (ISO/IEC 21031:2024)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    specification: str
    functional_unit: SciUnit
    rows: list[SciRow]
    totals: dict[str, float]
    provisional_totals: dict[str, float] | None = None
