"""What a pod asks for: GPUs (whole, fraction, MIG), model and memory constraints, CPU, memory.

Parsed once per request from the msgspec Pod slice. A pod whose resource requests cannot be parsed
raises :class:`DemandError` naming the field (the filter answers with ``Error``); an unparsable
lowcarb annotation never fails the pod: the class default is used and the reason is kept in
``notes`` so the decision can record it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from scheduler import wire
from scheduler.names import ANN_GPU_MEMORY, ANN_GPU_MILLI, ANN_GPU_MODELS
from scheduler.quantity import QuantityError, int_value, milli_value

GPU_RESOURCE = "nvidia.com/gpu"
MIG_PREFIX = "nvidia.com/mig-"
LABEL_GPU_PRODUCT = "nvidia.com/gpu.product"


class DemandError(ValueError):
    """A pod whose requests cannot be parsed; the message names the field."""


@dataclass(slots=True)
class PodDemand:
    """A pod's resource demand in the units the node table uses."""

    uid: str
    namespace: str
    name: str
    gpus: int = 0
    gpu_milli: int = 0
    mig: dict[str, int] = field(default_factory=dict)
    models: tuple[str, ...] = ()
    min_gpu_mem_mib: int = 0
    cpu_milli: int = 0
    mem_bytes: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def gpu_fraction(self) -> float:
        """GPUs this pod occupies, fractions counted fractionally (300 milli -> 0.3)."""
        if self.gpus > 1 or self.gpu_milli >= 1000:
            return float(self.gpus)
        return self.gpu_milli / 1000.0 if self.gpus == 1 else 0.0

    @property
    def shares_gpu(self) -> bool:
        return self.gpus == 1 and 0 < self.gpu_milli < 1000

    @property
    def wants_gpu(self) -> bool:
        return self.gpus > 0 or bool(self.mig)


def _requests(containers: list[wire.Container] | None) -> list[tuple[str, dict[str, str]]]:
    out = []
    for i, c in enumerate(containers or ()):
        res = c.resources
        req = dict((res.limits or {}) if res else {})
        if res and res.requests:
            req.update(res.requests)  # requests win; limits stand in for missing requests
        out.append((c.name or str(i), req))
    return out


def _parse(kind: str, container: str, resource: str, text: str, conv: type[int] | None) -> int:
    try:
        return milli_value(text) if conv is None else int_value(text)
    except QuantityError as exc:
        raise DemandError(
            f"pod spec.{kind}[{container}].resources.requests[{resource!r}]: {exc}"
        ) from exc


def _sum_requests(pod: wire.Pod) -> dict[str, int]:
    """Effective requests: max(sum of containers, each init container) + overhead."""
    totals: dict[str, int] = {}
    for name, req in _requests(pod.spec.containers):
        for res, text in req.items():
            conv = None if res == "cpu" else int
            totals[res] = totals.get(res, 0) + _parse("containers", name, res, text, conv)
    for name, req in _requests(pod.spec.initContainers):
        for res, text in req.items():
            conv = None if res == "cpu" else int
            totals[res] = max(totals.get(res, 0), _parse("initContainers", name, res, text, conv))
    for res, text in (pod.spec.overhead or {}).items():
        conv = None if res == "cpu" else int
        totals[res] = totals.get(res, 0) + _parse("overhead", "-", res, text, conv)
    return totals


def _model_constraint(pod: wire.Pod, notes: list[str]) -> tuple[str, ...]:
    ann = (pod.metadata.annotations or {}).get(ANN_GPU_MODELS)
    if ann is not None:
        models = tuple(m.strip() for m in ann.split("|") if m.strip())
        if models:
            return models
        notes.append(f"annotation {ANN_GPU_MODELS}={ann!r} lists no model; ignored")
    selector = (pod.spec.nodeSelector or {}).get(LABEL_GPU_PRODUCT)
    if selector:
        return (selector,)
    aff = pod.spec.affinity.nodeAffinity if pod.spec.affinity else None
    required = aff.requiredDuringSchedulingIgnoredDuringExecution if aff else None
    for term in (required.nodeSelectorTerms or []) if required else []:
        for expr in term.matchExpressions or []:
            if expr.key == LABEL_GPU_PRODUCT and expr.operator == "In" and expr.values:
                return tuple(expr.values)
    return ()


def parse_demand(pod: wire.Pod) -> PodDemand:
    """Build a :class:`PodDemand`; raise :class:`DemandError` for unparsable resource requests."""
    meta = pod.metadata
    ann = meta.annotations or {}
    demand = PodDemand(uid=meta.uid, namespace=meta.namespace, name=meta.name)
    totals = _sum_requests(pod)
    demand.cpu_milli = totals.get("cpu", 0)
    demand.mem_bytes = totals.get("memory", 0)
    demand.gpus = totals.get(GPU_RESOURCE, 0)
    demand.mig = {
        res[len(MIG_PREFIX) :]: n for res, n in totals.items() if res.startswith(MIG_PREFIX) and n
    }
    if demand.gpus:
        demand.gpu_milli = 1000
        text = ann.get(ANN_GPU_MILLI)
        if text is not None:
            try:
                milli = int(text)
                if not 1 <= milli <= 1000:
                    raise ValueError
            except ValueError:
                demand.notes.append(
                    f"annotation {ANN_GPU_MILLI}={text!r} is not an integer 1..1000; "
                    "using whole GPUs"
                )
            else:
                if demand.gpus == 1:
                    demand.gpu_milli = milli
                elif milli != 1000:
                    demand.notes.append(
                        f"annotation {ANN_GPU_MILLI} applies to 1-GPU pods only; pod asks for "
                        f"{demand.gpus} GPUs, using whole GPUs"
                    )
    demand.models = _model_constraint(pod, demand.notes)
    text = ann.get(ANN_GPU_MEMORY)
    if text is not None:
        try:
            demand.min_gpu_mem_mib = -(-int_value(text) // 2**20)
        except QuantityError:
            demand.notes.append(f"annotation {ANN_GPU_MEMORY}={text!r} is not a quantity; ignored")
    return demand
