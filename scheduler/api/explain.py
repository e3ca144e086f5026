"""The answer of ``/explain`` (issue 5's shape), as pydantic models for the OpenAPI contract.

:func:`scheduler.explain.explain` builds the answer as a plain dict; the route declares
:class:`Explanation` as its response model, so what it serves is checked against this shape.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class TermDetail(BaseModel):
    """One term's value on a feasible node."""

    model_config = ConfigDict(extra="forbid")

    raw: float | None = Field(description="The term's value in its unit; null when not finite")
    unit: str = Field(description="Unit of raw, e.g. gCO2e (empty when unitless)")
    normalized: float | None = Field(
        description="The term's 0..1 preference over the feasible nodes, 1 best; only the GPU "
        "term's is used, to order nodes of equal score"
    )


class NodeCost(BaseModel):
    """The cost arithmetic of one node: quantities, prices, components and their sum (USD)."""

    model_config = ConfigDict(extra="forbid")

    zone: str | None = Field(description="The node's grid zone; null when it has none")
    g_per_kwh: float | None = Field(
        description="Intensity used, gCO2e/kWh: the forecast mean over the window, else the latest"
    )
    forecast: bool = Field(description="True when a forecast covered the window")
    window_start: str = Field(description="Start of the run window (now), UTC ISO 8601")
    window_end: str = Field(description="End of the run window (now + run_h), UTC ISO 8601")
    gpu_watts: float | None = Field(description="Power of one GPU of this node's model, W")
    pue: float | None = Field(description="Power usage effectiveness of the node's site")
    run_h: float | None = Field(description="Expected run time on this node's GPU model, hours")
    kwh: float | None = Field(description="Energy over the run at the site's PUE")
    g_co2e: float | None = Field(description="Expected emissions over the run")
    gpu_hours: float | None = Field(description="GPUs x run hours")
    stranded_gpus: float | None = Field(
        description="GPUs the placement strands: FGD delta + fill_order_gpus, beyond the "
        "candidates' least"
    )
    fill_order_gpus: float | None = Field(
        description="fillOrderGpus x the node's position in the fleet's fill order (clean zones "
        "first, then a fixed node order; 0 front .. 1 back)"
    )
    scarcity: float | None = Field(description="0 on an idle fleet, 1 when full")
    long_run_scarcity: float | None = Field(
        description="The fleet's scarcity over the trailing 14 days (time-weighted mean): the "
        "stranded price's for run hours past prices.scarcityHorizon (48h by default); null: the "
        "whole run at scarcity"
    )
    carbon_per_tonne_usd: float | None = Field(description="Carbon price, USD per tCO2e")
    gpu_hour_usd: float | None = Field(description="Price of a GPU-hour at this scarcity")
    stranded_gpu_hour_usd: float | None = Field(description="Price of a stranded GPU-hour")
    energy_usd_per_kwh: float | None = Field(
        description="Electricity price averaged over the window; null when energy is not priced"
    )
    carbon_usd: float | None = Field(description="gCO2e / 1e6 x carbon price")
    gpu_usd: float | None = Field(description="GPU-hours x GPU-hour price")
    stranded_usd: float | None = Field(
        description="Stranded GPUs x run h x stranded price (hours past prices.scarcityHorizon "
        "at strandedGpuHour x long_run_scarcity)"
    )
    energy_usd: float | None = Field(description="kWh x energy price; null when not priced")
    cost_usd: float | None = Field(description="The sum of the components")


class NodeExplanation(BaseModel):
    """One candidate node: feasible or why not, each term, its cost and the final score."""

    model_config = ConfigDict(extra="forbid")

    node: str
    feasible: bool
    reason: str | None = Field(description="Why the node cannot take the pod; null if it can")
    terms: dict[str, TermDetail] = Field(
        description="Per term (carbon, gpu_fit, ...); feasible only"
    )
    score: int = Field(ge=0, le=10, description="The extender score kube-scheduler gets, 0..10")
    cost: NodeCost | None = Field(default=None, description="The cost arithmetic; feasible only")


class CarbonDataUsed(BaseModel):
    """The carbon intensity used for one zone, where it came from and how old it was."""

    model_config = ConfigDict(extra="forbid")

    source: str | None = Field(description="The provider that answered; null for an unknown zone")
    age_s: int | float | None = Field(description="Age of the reading in seconds")
    g_per_kwh: float | None = Field(description="Intensity used, gCO2e/kWh")
    reason: str | None = Field(default=None, description="Present when no source knows the zone")


class WorkloadShape(BaseModel):
    """One typical pod shape and its share of the typical workload."""

    model_config = ConfigDict(extra="forbid")

    gpus: int = Field(description="GPUs the pod asks for (0: a CPU-only pod)")
    gpu_milli: int = Field(description="Thousandths of each GPU (1000: whole GPUs; 0: none)")
    cpu_milli: int = Field(description="CPU the pod asks for, millicores")
    models: list[str] = Field(description="GPU models the pod allows (empty: any)")
    weight: float = Field(description="Share of the typical workload, 0..1")


class TypicalWorkload(BaseModel):
    """The expected workload the GPU term's FGD scores against: FGD's "typical pods", learned
    from the pods the service filters (``lowcarb explain``: from the ``--pods`` it is given)."""

    model_config = ConfigDict(extra="forbid")

    source: Literal["learned", "default", "fixed", "none"] = Field(
        description="learned from recent pods; default before any pod was seen (1 whole GPU); "
        "fixed when pinned in code (simulator); none without a GPU term"
    )
    pods: int = Field(description="Pods it was learned from (0 unless learned)")
    shapes: int = Field(description="Distinct pod shapes in it")
    top: list[WorkloadShape] = Field(description="The most popular shapes, most popular first")
    gpu_mode: str = Field(description="The class's gpuMode; the workload is used by fgd only")


def workload_line(workload: dict[str, Any]) -> str:
    """A :class:`TypicalWorkload` in one line (explain's table header), e.g. ``typical pods (FGD):
    4 shapes, learned from 120 pods; 8 GPU 50%, 1 GPU 25%, 0.5 GPU 15%, ...``."""
    count = f"{workload['shapes']} shape{'s' if workload['shapes'] != 1 else ''}"
    if workload["source"] == "learned":
        where = f"learned from {workload['pods']} pod{'s' if workload['pods'] != 1 else ''}"
    elif workload["source"] == "default":
        where = "the default (no pod seen yet)"
    else:
        where = workload["source"]
    shapes = ", ".join(f"{_shape_text(s)} {s['weight']:.0%}" for s in workload["top"])
    more = ", ..." if workload["shapes"] > len(workload["top"]) else ""
    unused = f" (not used: gpuMode {workload['gpu_mode']})" if workload["gpu_mode"] != "fgd" else ""
    return f"typical pods (FGD): {count}, {where}; {shapes}{more}{unused}"


def _shape_text(shape: dict[str, Any]) -> str:
    if not shape["gpus"] or not shape["gpu_milli"]:
        text = "CPU only"
    elif shape["gpu_milli"] < 1000:
        text = f"{shape['gpu_milli'] / 1000:g} GPU"
    else:
        text = f"{shape['gpus']} GPU"
    return f"{text} {'|'.join(shape['models'])}" if shape["models"] else text


class Explanation(BaseModel):
    """Why the pod would go where: nodes by score, then cost (cheapest first), infeasible last."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    pod: str = Field(description="namespace/name", examples=["ml/train-0"])
    klass: str = Field(alias="class", description="The workload class chosen for the pod")
    nodes: list[NodeExplanation]
    carbon_data: dict[str, CarbonDataUsed] = Field(description="Per zone of the candidate nodes")
    class_reason: str = Field(description="Why that class (label, owner kind, default, ...)")
    expected_duration_s: float = Field(description="The pod's expected run time, seconds")
    notes: list[str] = Field(description="Annotations ignored, zones without data, ...")
    workload: TypicalWorkload = Field(
        description="The typical pods the GPU term used (where from, how many pods, top shapes)"
    )
