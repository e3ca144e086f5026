"""Policy: the one place platform teams tune lowcarb (pydantic v2, unknown keys rejected).

A policy (``apiVersion: lowcarb.dev/v2``) holds the carbon data section (providers, fallback
chain, zone mapping; validated by :mod:`carbon.config`), the power model (:mod:`carbon.energy`),
the prices of the one-currency cost model (:class:`Prices`, with documented defaults, and the
energy prices of :mod:`scheduler.costs.energy`) and the workload classes: how pods are
recognised (selectors), how their candidate nodes are scored (GPU score mode, signal kind,
expected duration, a class's own ``prices`` over the policy's) and constrained (data residency,
maximum intensity), and whether they may wait for a cleaner hour (``temporalShift``). Which terms
run is derived, not configured: the GPU term (its filter and FGD delta, for GPU pods), the carbon
term (every pod) and the constraints filter. A class's per-term settings are the terms' own
``Args`` models (:mod:`scheduler.terms`), which :class:`WorkloadClass` is built from. The
class-weights model of ``lowcarb.dev/v1`` is gone (:mod:`scheduler.policy.migrate` says how to
move and rewrites a file). Every duration field is :data:`carbon.duration.Duration`; cross-field
checks live in :mod:`scheduler.policy.checks`. :mod:`scheduler.policy.validate` is the loader
(``load_policy``): every error at once with file:line:column; ``policies/schema.json`` is
generated from these models.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from carbon.accounting.settings import AccountingPolicy
from carbon.checks import raise_problems, separate
from carbon.config import CarbonConfig
from carbon.duration import Duration
from carbon.duration import parse_duration as parse_duration  # the one grammar, re-exported
from carbon.energy import PowerModel
from scheduler.costs.energy import EnergyPrices
from scheduler.policy.checks import DEFAULT_CLASS, default_class_problems, requirement_problems
from scheduler.terms.constraints import ConstraintsArgs
from scheduler.terms.gpu_fit import GpuFitArgs

API_VERSION = "lowcarb.dev/v2"
DEFAULT_POLICY = Path(__file__).resolve().parents[1] / "data" / "default.yaml"
BUILTIN_CLASSES = ("training", "batch", "inference", DEFAULT_CLASS)
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_NAME = re.compile(NAME_PATTERN)


def _class_name(name: str) -> str:
    if not _NAME.match(name):
        fixed = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "training"
        raise ValueError(
            f"class name {name!r} must be lower-case letters, digits and '-' (like Kubernetes "
            f"names), e.g. {fixed!r}"
        )
    return name


ClassName = Annotated[
    str, AfterValidator(_class_name), WithJsonSchema({"type": "string", "pattern": NAME_PATTERN})
]


def _fraction(value: object) -> object:
    """``0.1`` or ``"10%"`` -> 0.1."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return float(value.strip()[:-1]) / 100.0
        except ValueError:
            raise ValueError(f"{value!r} is not a percentage (write e.g. '10%' or 0.1)") from None
    return value


Fraction = Annotated[
    float,
    BeforeValidator(_fraction),
    Field(ge=0.0, le=1.0),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": 1},
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*%\s*$"},
            ]
        }
    ),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SelectorRequirement(_Strict):
    """One label requirement, as in a Kubernetes label selector."""

    key: str = Field(min_length=1)
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _values(self, info: ValidationInfo) -> SelectorRequirement:
        if not separate(info):
            raise_problems(requirement_problems(self.model_dump()))
        return self

    def matches(self, labels: dict[str, str]) -> bool:
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        hit = self.key in labels and labels[self.key] in self.values
        return hit if self.operator == "In" else not hit


class Selector(_Strict):
    """Which pods belong to a class. Every field given must match (AND); lists match any item.

    Owner kinds are the pod's controller kinds, with the usual chains filled in: a pod of a
    Deployment is owned by a ReplicaSet (and carries ``pod-template-hash``), a JobSet's pods by a
    Job (and carry ``jobset.sigs.k8s.io/jobset-name``); both are recognised.
    """

    matchLabels: dict[str, str] = Field(default_factory=dict, description="Exact label values")
    matchExpressions: list[SelectorRequirement] = Field(
        default_factory=list, description="Label requirements (In, NotIn, Exists, DoesNotExist)"
    )
    matchAnnotations: dict[str, str] = Field(
        default_factory=dict, description="Exact annotation values"
    )
    namespaces: list[str] = Field(
        default_factory=list, description="Namespace names or globs, e.g. 'ml-*'"
    )
    ownerKinds: list[str] = Field(
        default_factory=list,
        description="Controller kinds: Job, JobSet, PyTorchJob, RayJob, Deployment, StatefulSet...",
    )

    def is_empty(self) -> bool:
        return not (
            self.matchLabels
            or self.matchExpressions
            or self.matchAnnotations
            or self.namespaces
            or self.ownerKinds
        )

    def matches(
        self,
        labels: dict[str, str],
        annotations: dict[str, str],
        namespace: str,
        owner_kinds: frozenset[str],
    ) -> bool:
        """True when every given criterion holds (an empty selector matches nothing)."""
        if self.is_empty():
            return False
        if any(labels.get(k) != v for k, v in self.matchLabels.items()):
            return False
        if not all(r.matches(labels) for r in self.matchExpressions):
            return False
        if any(annotations.get(k) != v for k, v in self.matchAnnotations.items()):
            return False
        if self.namespaces and not any(fnmatch.fnmatchcase(namespace, p) for p in self.namespaces):
            return False
        return not self.ownerKinds or any(k in owner_kinds for k in self.ownerKinds)


class TemporalShift(_Strict):
    """Let the class's pods wait for a cleaner hour (scheduling gates, issue 7)."""

    enabled: bool = True
    maxDelay: Duration = Field(description="Longest wait after creation, e.g. '12h'")
    minSaving: Fraction = Field(
        default=0.1,
        description="Hold only when the expected saving beats this fraction (0.1 or '10%')",
    )

    @property
    def max_delay_s(self) -> float:
        return self.maxDelay


class GpuLearning(_Strict):
    """How the GPU term learns the expected workload (FGD's typical pods) from recent pods."""

    windowPods: int = Field(
        default=5000, ge=10, le=1_000_000, description="Learn from the last N pods seen"
    )
    window: Duration | None = Field(
        default=None, description="Also forget pods seen longer ago than this, e.g. '24h'"
    )
    popularity: float = Field(
        default=0.95,
        gt=0.0,
        le=1.0,
        description="Typical pods: the most common shapes covering this share of recent pods",
    )

    @property
    def window_s(self) -> float | None:
        return self.window


class Prices(_Strict):
    """One currency for placement: each node's cost for the pod is the sum of physical quantities
    times these prices (US dollars), and the 0..10 answer follows cost differences that matter.

    cost = gCO2e / 1e6 x carbonPerTonne
         + GPUs x run hours on the node's model x gpuHour(s)          (occupied GPU time)
         + stranded GPUs x run h x strandedGpuHour x s
         + kWh x the zone's electricity price over the run              (with ``energy``)
    with s = the fleet's allocated GPU share ** scarcityExponent (0 idle, 1 full),
    gpuHour(s) = gpuHourIdle + (gpuHourBusy - gpuHourIdle) x s, and stranded GPUs = the FGD
    delta + fillOrderGpus x the node's position in the fleet's fill order (clean zones first,
    then a fixed node order; 0 front .. 1 back), beyond the candidates' least.
    """

    carbonPerTonne: float = Field(
        default=190.0,
        ge=0.0,
        description="Internal carbon price, USD per tCO2e (default: US EPA 2023 social cost of "
        "carbon, 2 % near-term discount rate, 2020 emissions, 2020 dollars)",
    )
    gpuHourIdle: float = Field(
        default=0.005,
        ge=0.0,
        description="Price of one occupied GPU-hour on an idle fleet, USD; the same for every "
        "model, so a 5x slower GPU costs 5x the GPU time (default: an exchange rate, 26 gCO2e "
        "per GPU-hour at $190/t, tuned on the 2022 series)",
    )
    gpuHourBusy: float = Field(
        default=0.005,
        ge=0.0,
        description="Price of one occupied GPU-hour on a full fleet, USD (default: flat, as idle; "
        "AWS p4d.24xlarge on-demand is $4.10 per A100-hour for a fleet that rents by the hour)",
    )
    strandedGpuHour: float = Field(
        default=4.10,
        ge=0.0,
        description="Price of one stranded GPU-hour (FGD fragmentation delta x run hours) on a "
        "full fleet, USD, scaled by scarcity (default: AWS p4d.24xlarge on-demand, us-east-1, "
        "$32.77/h for 8 A100, approximate)",
    )
    fillOrderGpus: float = Field(
        default=2.0,
        ge=0.0,
        le=64.0,
        description="Consolidation: GPUs counted as stranded on the node last in the fleet's "
        "fill order (zones by long-run intensity, cleanest first, then a fixed node order) "
        "beyond the first; 0: FGD delta alone (default tuned on the 2022 series)",
    )
    scarcityExponent: float = Field(
        default=2.0,
        gt=0.0,
        le=10.0,
        description="Scarcity s = the fleet's allocated GPU share ** this (0 idle, 1 full)",
    )
    scarcityHorizon: Duration | None = Field(
        default=48 * 3600.0,
        description="How far this cycle's scarcity is believed, like a forecast's reach: run "
        "hours past it strand GPUs at the fleet's long-run scarcity (its trailing 14-day mean) "
        "instead, e.g. '48h'; null: the whole run at this cycle's scarcity",
    )
    indifference: Fraction = Field(
        default=0.02,
        description="Nodes within this fraction of the cheapest node's cost all score 10",
    )
    fullScale: float = Field(
        default=1.0,
        gt=0.0,
        description="Relative extra cost ((cost - best) / best) that maps to score 0",
    )
    energy: EnergyPrices | None = Field(
        default=None,
        description="Electricity price per grid zone, USD/kWh, flat or a time-of-use schedule; "
        "without it energy is not priced",
    )


class ClassPrices(_Strict):
    """A class's own prices, merged over the policy's ``prices`` (unset keys: the policy's)."""

    carbonPerTonne: float | None = Field(
        default=None, ge=0.0, description="USD per tCO2e for this class (0: carbon-blind)"
    )
    gpuHourIdle: float | None = Field(default=None, ge=0.0)
    gpuHourBusy: float | None = Field(
        default=None, ge=0.0, description="e.g. higher for inference, whose GPU time is worth more"
    )
    strandedGpuHour: float | None = Field(default=None, ge=0.0)
    fillOrderGpus: float | None = Field(default=None, ge=0.0, le=64.0)
    indifference: Fraction | None = None
    fullScale: float | None = Field(default=None, gt=0.0)

    def over(self, base: Prices) -> Prices:
        """``base`` with this class's prices in place of its own."""
        set_ = {k: v for k, v in self.model_dump().items() if v is not None}
        return base.model_copy(update=set_) if set_ else base


# A class is built from every term's ``Args`` (``gpuMode``, ``constraints``): validated and
# documented here, it is handed to each term as its settings.
class WorkloadClass(GpuFitArgs, ConstraintsArgs, _Strict):
    """How the pods of one class are recognised, scored and constrained."""

    description: str = ""
    selector: Selector = Field(
        default_factory=Selector,
        description="Pods matching this selector get the class (the lowcarb.dev/class "
        "annotation wins; classes are tried in file order; 'default' catches the rest)",
    )
    prices: ClassPrices | None = Field(
        default=None,
        description="This class's prices over the policy's prices (e.g. carbonPerTonne: 0 for a "
        "carbon-blind class, a higher gpuHourBusy for inference)",
    )
    expectedDuration: Duration = Field(
        default="1h",
        validate_default=True,
        description="Run time when the pod has no lowcarb.dev/expected-duration",
    )
    signal: Literal["average", "marginal"] = Field(
        default="average", description="Grid signal the carbon term reads"
    )
    temporalShift: TemporalShift | None = None

    @property
    def duration_s(self) -> float:
        return self.expectedDuration


class Policy(_Strict):
    """A lowcarb policy document (``apiVersion: lowcarb.dev/v2``, ``kind: Policy``)."""

    apiVersion: Literal["lowcarb.dev/v2"] = "lowcarb.dev/v2"
    kind: Literal["Policy"] = "Policy"
    carbon: CarbonConfig = Field(
        default_factory=CarbonConfig,
        description="Carbon data: providers, fallback chain, zone mapping, static values",
    )
    power: PowerModel = Field(
        default_factory=PowerModel, description="GPU watts and speed, CPU/memory power, PUE"
    )
    gpu: GpuLearning = Field(
        default_factory=GpuLearning,
        description="Expected-workload learning of the fgd GPU score (window, popularity)",
    )
    accounting: AccountingPolicy = Field(
        default_factory=AccountingPolicy,
        description="Ledger accounting: market-based factors, residual mix, measured energy",
    )
    prices: Prices = Field(
        default_factory=Prices,
        description="Prices of the one-currency cost model (USD): carbon, GPU time, stranded "
        "GPUs, energy; every key has a documented default",
    )
    classes: dict[ClassName, WorkloadClass] = Field(
        default_factory=lambda: {DEFAULT_CLASS: WorkloadClass()},
        json_schema_extra={"additionalProperties": False},  # a name must match the pattern
        description="Workload classes by name, tried in this order; 'default' is added when "
        "absent and catches every pod no other class selects",
    )

    @field_validator("classes")
    @classmethod
    def _default_class(cls, value: dict[str, WorkloadClass]) -> dict[str, WorkloadClass]:
        return value if DEFAULT_CLASS in value else {**value, DEFAULT_CLASS: WorkloadClass()}

    @model_validator(mode="after")
    def _default_selector(self, info: ValidationInfo) -> Policy:
        if not separate(info):
            default = {"selector": self.classes[DEFAULT_CLASS].selector.model_dump()}
            raise_problems(default_class_problems({DEFAULT_CLASS: default}))
        return self

    def workload_class(self, name: str) -> WorkloadClass:
        """The class called ``name``, else ``default``."""
        return self.classes.get(name) or self.classes[DEFAULT_CLASS]

    def class_prices(self, name: str) -> Prices:
        """The prices ``name``'s pods are scored with: the class's over the policy's."""
        cls = self.workload_class(name)
        return cls.prices.over(self.prices) if cls.prices is not None else self.prices


def dump_yaml(policy: Policy) -> str:
    """The policy as YAML (aliases as in files; defaults included)."""
    data = policy.model_dump(mode="json", by_alias=True)
    return yaml.safe_dump(data, sort_keys=False)
