"""Power model: watts, relative speed and embodied emissions per GPU model, PUE per zone.

Shared by the scheduler's emissions term (expected energy of a pod on a node) and by the ledger
(energy over a pod's actual runtime). It is policy configuration (pydantic), but the arithmetic
lives in plain functions so the hot path can vectorise it over nodes with numpy.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    WithJsonSchema,
    field_validator,
)


class GpuPower(BaseModel):
    """One GPU model's board power and speed relative to the reference (A100 = 1.0)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    match: str = Field(
        description="Case-insensitive substring or regex matched against nvidia.com/gpu.product"
    )
    watts: float = Field(gt=0, le=5000, description="Average board power under load, W")
    relativeSpeed: float = Field(default=1.0, gt=0, le=100, description="Throughput vs. A100")
    embodiedGPerHour: float = Field(
        default=0.0, ge=0, description="Embodied emissions amortised per GPU-hour, gCO2e"
    )

    @field_validator("match")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(
                f"{value!r} is not a valid regular expression ({exc}); write a plain product "
                "substring such as 'H100' or escape special characters"
            ) from None
        return value


DEFAULT_GPUS: tuple[GpuPower, ...] = (
    # Board power: vendor TDP scaled to a typical training load (~80 %); relative speed: mixed
    # precision training throughput vs. A100 from vendor and MLPerf figures. See README.
    GpuPower(match="H200", watts=560, relativeSpeed=2.2, embodiedGPerHour=30.0),
    GpuPower(match="H100", watts=560, relativeSpeed=2.0, embodiedGPerHour=28.0),
    GpuPower(match="B200", watts=800, relativeSpeed=3.5, embodiedGPerHour=40.0),
    GpuPower(match="A100", watts=320, relativeSpeed=1.0, embodiedGPerHour=18.0),
    GpuPower(match="L40", watts=240, relativeSpeed=0.9, embodiedGPerHour=12.0),
    GpuPower(match="L4", watts=60, relativeSpeed=0.3, embodiedGPerHour=4.0),
    GpuPower(match="A10", watts=120, relativeSpeed=0.5, embodiedGPerHour=8.0),
    GpuPower(match="V100", watts=250, relativeSpeed=0.5, embodiedGPerHour=12.0),
    GpuPower(match="T4", watts=60, relativeSpeed=0.2, embodiedGPerHour=4.0),
    GpuPower(match="P100", watts=200, relativeSpeed=0.3, embodiedGPerHour=10.0),
)


def _pue(value: float) -> float:
    if not 1.0 <= value <= 3.0:
        raise ValueError(f"PUE {value:g} is outside 1.0..3.0 (typical: 1.1..1.6)")
    return value


Pue = Annotated[
    float, AfterValidator(_pue), WithJsonSchema({"type": "number", "minimum": 1, "maximum": 3})
]


class PowerModel(BaseModel):
    """Energy model of the fleet: per-GPU-model power, CPU/memory power, PUE."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpus: tuple[GpuPower, ...] = Field(
        default=(),
        description="GPU models, first match wins; searched before the built-in table",
    )
    builtinGpus: bool = Field(
        default=True,
        description="After `gpus`, also search the built-in table (H200, H100, B200, A100, ...)",
    )
    defaultGpu: GpuPower = Field(
        default=GpuPower(match=".*", watts=300, relativeSpeed=1.0, embodiedGPerHour=15.0),
        description="Used for GPU products no entry matches",
    )
    cpuWattsPerCore: float = Field(default=4.0, ge=0)
    memoryWattsPerGiB: float = Field(default=0.375, ge=0)
    pue: float = Field(default=1.2, ge=1.0, le=3.0, description="Default power usage effectiveness")
    pueByZone: dict[str, Pue] = Field(
        default_factory=dict, description="PUE per grid zone key, e.g. {SE: 1.1}"
    )
    pueByRegion: dict[str, Pue] = Field(
        default_factory=dict,
        description="PUE per node region label value (wins over pueByZone), e.g. {eu-north-1: 1.1}",
    )
    _cache: dict[str, GpuPower] = PrivateAttr(default_factory=dict)

    def table(self) -> tuple[GpuPower, ...]:
        """Entries searched for a GPU product, in order."""
        return (*self.gpus, *DEFAULT_GPUS) if self.builtinGpus else self.gpus

    def gpu(self, product: str) -> GpuPower:
        """The entry for a GPU product label (first match wins), else ``defaultGpu``."""
        hit = self._cache.get(product)
        if hit is None:
            hit = next(
                (e for e in self.table() if re.search(e.match, product, flags=re.IGNORECASE)),
                self.defaultGpu,
            )
            self._cache[product] = hit
        return hit

    def pue_for(self, zone: str | None, region: str | None = None) -> float:
        """PUE of a site: by region label value, else by grid zone, else the default."""
        if region is not None and region in self.pueByRegion:
            return self.pueByRegion[region]
        if zone is not None and zone in self.pueByZone:
            return self.pueByZone[zone]
        return self.pue

    def it_watts(self, product: str, gpus: float, cpu_cores: float, memory_gib: float) -> float:
        """IT power of a pod (before PUE): GPUs (fractions count fractionally) + CPU + memory."""
        return (
            self.gpu(product).watts * gpus
            + self.cpuWattsPerCore * cpu_cores
            + self.memoryWattsPerGiB * memory_gib
        )


def energy_kwh(watts: float, pue: float, seconds: float) -> float:
    """Facility energy in kWh of ``watts`` of IT load for ``seconds`` at ``pue``."""
    return watts * pue * seconds / 3.6e6
