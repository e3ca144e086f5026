"""Workload classes: which class a pod belongs to, and its expected duration.

Order: the ``lowcarb.dev/class`` annotation when it names a class of the policy; else the first
class (in file order) whose selector matches the pod's labels, annotations, namespace and owner
kinds; else ``default``. The expected duration is the ``lowcarb.dev/expected-duration``
annotation when it parses, else the class default. Nothing here fails a pod: an annotation that
cannot be used falls back, and the reason is kept in :attr:`ClassChoice.notes` for the decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from carbon.duration import format_duration, parse_duration
from scheduler import wire
from scheduler.names import ANN_CLASS, ANN_DURATION
from scheduler.policy.model import DEFAULT_CLASS, Policy, WorkloadClass

# Labels that reveal the controller behind the pod's direct owner
_JOBSET_LABEL = "jobset.sigs.k8s.io/jobset-name"
_DEPLOYMENT_HASH = "pod-template-hash"
_KUBEFLOW_LABEL = "training.kubeflow.org/job-name"
_CRONJOB_LABEL = "batch.kubernetes.io/cronjob-name"
MAX_DURATION_S = 90 * 86400.0


@dataclass(frozen=True, slots=True)
class ClassChoice:
    """The class chosen for a pod, why, and the pod's expected duration."""

    name: str
    workload_class: WorkloadClass
    duration_s: float
    reason: str
    notes: tuple[str, ...] = field(default=())


def owner_kinds(pod: wire.Pod) -> frozenset[str]:
    """Kinds of the pod's owners, with the controller chains that labels reveal.

    A Deployment's pods are owned by a ReplicaSet and carry ``pod-template-hash``; a JobSet's by a
    Job and carry ``jobset.sigs.k8s.io/jobset-name``; both count as their top-level kind too.
    """
    meta = pod.metadata
    labels = meta.labels or {}
    kinds = {ref.kind for ref in meta.ownerReferences or () if ref.kind}
    if "ReplicaSet" in kinds and _DEPLOYMENT_HASH in labels:
        kinds.add("Deployment")
    if _JOBSET_LABEL in labels:
        kinds.add("JobSet")
    if _CRONJOB_LABEL in labels:
        kinds.add("CronJob")
    if _KUBEFLOW_LABEL in labels and not kinds & {"PyTorchJob", "TFJob", "MPIJob", "XGBoostJob"}:
        kinds.add("KubeflowJob")
    return frozenset(kinds)


def classify(policy: Policy, pod: wire.Pod) -> ClassChoice:
    """Choose the class and expected duration of ``pod`` under ``policy``."""
    meta = pod.metadata
    labels = meta.labels or {}
    annotations = meta.annotations or {}
    notes: list[str] = []
    name: str | None = None
    reason = ""
    wanted = annotations.get(ANN_CLASS)
    if wanted is not None:
        if wanted in policy.classes:
            name, reason = wanted, f"annotation {ANN_CLASS}"
        else:
            known = ", ".join(policy.classes)
            notes.append(
                f"annotation {ANN_CLASS}={wanted!r} names no class of the policy (known: "
                f"{known}); chose by selectors"
            )
    if name is None:
        kinds = owner_kinds(pod)
        for cname, cls in policy.classes.items():
            if cname != DEFAULT_CLASS and cls.selector.matches(
                labels, annotations, meta.namespace, kinds
            ):
                name, reason = cname, f"selector of class {cname!r}"
                break
    if name is None:
        name, reason = DEFAULT_CLASS, "no class selected the pod"
    cls = policy.workload_class(name)
    duration = cls.duration_s
    text = annotations.get(ANN_DURATION)
    if text is not None:
        try:
            seconds = parse_duration(text)
            if seconds > MAX_DURATION_S:
                raise ValueError(f"{text!r} is longer than 90 days")
        except ValueError as exc:
            notes.append(
                f"annotation {ANN_DURATION}={text!r} is not usable ({exc}); using the class "
                f"{name!r} default {format_duration(cls.duration_s)}"
            )
        else:
            duration = seconds
    return ClassChoice(name, cls, duration, reason, tuple(notes))
