"""What a placement comparison is run with and what it yields: the options, one policy's run, one
load level, and the whole comparison (with the JSON line's per-policy summary)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from carbon.energy import PowerModel
from carbon.series import HourlySeries
from scheduler.policy.model import Policy
from scheduler.sim.baselines import Baseline
from scheduler.sim.bound import Bound
from scheduler.sim.replay import Accounting, Placements
from scheduler.sim.trace import SimNodes, SimPods

FloatArray = npt.NDArray[np.float64]
DEFAULT_ZONES = ("NO", "GB", "DE-LU", "US-CAL-CISO", "US-TEX-ERCO", "IN-WE")
BASELINES = ("k8s-default", "bestfit", "fgd", "carbon-greedy", "lowcarb")
SHIFTED = ("shift-only", "lowcarb-shift")
PLACED_LIKE = {"shift-only": "k8s-default", "lowcarb-shift": "lowcarb"}
PLANNED_ON = {"shift-only": "mean", "lowcarb-shift": "best"}
REFERENCE = "k8s-default"  # the policy whose peak allocation defines a load level
QUICK_PODS = 2000
#: The per-policy keys of the JSON line (4 decimals for the first two, 2 for the rest).
SUMMARY_KEYS = (
    "tco2e",
    "bound_share",
    "saved_pct",
    "unallocated_gpu_pct_mean",
    "unallocated_gpu_pct_peak",
    "peak_allocated_gpu_pct",
    "pods_waiting",
    "wait_mean_s",
    "wait_p95_s",
    "unplaced",
    "unplaced_placed_by_others",
    "gpu_hours",
    "energy_kwh",
    "carbon_usd",
    "gpu_usd",
    "energy_usd",
    "cost_usd",
    "slowdown_mean",
    "jct_p95_s",
    "decisions_per_s",
)
SHIFT_KEYS = (
    "pods_held",
    "hold_mean_h",
    "shift_saved_pct",
    "shift_saved_batch_pct",
    "gate_saved_pct",
)


@dataclass(frozen=True, slots=True)
class SimOptions:
    """Everything that defines one comparison run (CLI and benchmark options)."""

    zones: tuple[str, ...] = DEFAULT_ZONES
    year: int = 2022
    start: str | None = None  # ISO date the trace's time 0 is aligned to (default: Jan 1)
    load_scale: float = 1.0
    seed: int = 0
    trace: str = "default"
    quick: bool = False
    pods: int | None = None  # first N pods (``quick`` means 2,000)
    slack_h: float = 0.0
    min_saving: float = 0.1  # hold only when the plan saves this share (TemporalShift default)
    lwa: str | None = None  # single-zone Let's Wait Awhile setting: DE, GB or FR (2020)
    policy: Path | None = None  # the lowcarb policy
    power: Path | None = None  # policies/simulation.yaml
    nodes: Path | None = None
    policies: tuple[str, ...] = ()  # subset to run (default: all)
    load_levels: tuple[str, ...] = ()  # "real" and/or target peak allocation percentages
    fleet_share: float | None = None  # keep this share of each model's nodes (quick: automatic)
    # a diagnostic: every engine is told each pod's real run time (what a
    # lowcarb.dev/expected-duration annotation gives) instead of its class's expected duration
    known_durations: bool = False
    node_order: int = 0  # node-order draw (:func:`scheduler.sim.trace.redraw_names`; 0: the names)


@dataclass(slots=True)
class PolicyRun:
    name: str
    placements: Placements
    accounting: Accounting
    hold_s: FloatArray
    metrics: dict[str, float] = field(default_factory=dict)
    expected_saving: FloatArray | None = None  # the gate's planned saving per pod (shift runs)


@dataclass(slots=True)
class Level:
    """One load level: the pods' arrivals compressed ``load_scale`` times, every policy on them."""

    load: str  # "real" or the target peak allocation in percent ("60")
    load_scale: float
    peak_allocated_gpu_pct: float  # reached by the reference policy (k8s-default)
    pods: SimPods
    edges: FloatArray
    runs: dict[str, PolicyRun]
    bound: Bound
    search: list[tuple[float, float]] = field(default_factory=list)  # (scale, peak %) tried

    def summary(self) -> dict[str, Any]:
        return {
            "load": self.load,
            "load_scale": round(self.load_scale, 2),
            "peak_allocated_gpu_pct": round(self.peak_allocated_gpu_pct, 2),
            "policies": policies_summary(self.runs, self.bound),
        }


def policies_summary(runs: Mapping[str, PolicyRun], bound: Bound) -> dict[str, Any]:
    """``{NAME: {tco2e, saved_pct, ...}, ..., "bound": {tco2e, saved_pct}}`` of one run set."""
    pol: dict[str, Any] = {}
    for name, run in runs.items():
        m = run.metrics
        pol[name] = {
            k: round(m[k], 4 if k in ("bound_share", "tco2e") else 2)
            for k in SUMMARY_KEYS
            if k in m
        }
        for extra in SHIFT_KEYS:
            if extra in m:
                pol[name][extra] = round(m[extra], 2)
    k8s = runs[REFERENCE].metrics["tco2e"] if REFERENCE in runs else None
    pol["bound"] = {
        "tco2e": round(bound.tco2e, 4),
        "saved_pct": round(100 * (1 - bound.tco2e / k8s), 2) if k8s else None,
    }
    return pol


@dataclass(slots=True)
class Comparison:
    options: SimOptions
    zones: tuple[str, ...]
    pods: SimPods
    nodes: SimNodes
    series: dict[str, HourlySeries]
    edges: FloatArray
    runs: dict[str, PolicyRun]
    bound: Bound
    power: PowerModel
    policies: dict[str, Policy | Baseline]
    levels: list[Level] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The benchmark's JSON line (``{"benchmark": "placement", ...}``)."""
        opts = self.options
        out: dict[str, Any] = {
            "benchmark": "placement",
            "zones": list(self.zones),
            "year": 2020 if opts.lwa else opts.year,
            "trace": opts.trace,
            "pods": len(self.pods),
            "nodes": len(self.nodes),
            "load_scale": opts.load_scale,
            "slack_h": opts.slack_h,
            "min_saving": opts.min_saving,
            "seed": opts.seed,
            "policies": policies_summary(self.runs, self.bound),
        }
        if opts.known_durations:
            out["known_durations"] = True
        if opts.node_order:
            out["node_order"] = opts.node_order
        if self.levels:
            out["levels"] = [level.summary() for level in self.levels]
        return out
