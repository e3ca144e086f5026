"""Policy warnings: valid, but probably not what was meant.

Owner kinds that look like typos, classes no selector can reach, residency zone patterns no zone
matches. :func:`scheduler.policy.validate.check_document` reports them beside the carbon-coverage
warnings of :mod:`scheduler.policy.carbon_lint` once the policy is valid (``lowcarb policy
validate``; errors only with ``--strict``).
"""

from __future__ import annotations

import fnmatch

from carbon.checks import Loc, Problem, did_you_mean
from scheduler.policy.model import Policy

KNOWN_OWNER_KINDS = (
    "Job", "CronJob", "JobSet", "Deployment", "ReplicaSet", "StatefulSet", "DaemonSet",
    "PyTorchJob", "TFJob", "MPIJob", "JAXJob", "XGBoostJob", "PaddleJob", "KubeflowJob",
    "TrainJob", "RayJob", "RayCluster", "LeaderWorkerSet", "Workflow", "SparkApplication",
    "Notebook", "InferenceService",
)  # fmt: skip


def policy_warnings(policy: Policy) -> list[Problem]:
    """(location, message) for each warning about a valid ``policy`` (see the module doc)."""
    from carbon.zones import builtin_annual_means  # data tables: loaded only when linting

    out: list[Problem] = []
    known_zones = set(builtin_annual_means()) | set(policy.carbon.static)
    known_zones |= set(policy.carbon.zones.values())
    for name, cls in policy.classes.items():
        base: Loc = ("classes", name)
        for i, kind in enumerate(cls.selector.ownerKinds):
            if kind not in KNOWN_OWNER_KINDS:
                hint = did_you_mean(kind, list(KNOWN_OWNER_KINDS))
                out.append(
                    (
                        (*base, "selector", "ownerKinds", i),
                        f"owner kind {kind!r} is not a kind lowcarb knows{hint} (kinds are "
                        "case-sensitive; a custom controller's kind is fine)",
                    )
                )
        if name != "default" and cls.selector.is_empty():
            out.append(
                (
                    base,
                    f"class {name!r} has no selector: only pods annotated lowcarb.dev/class: "
                    f"{name} get it",
                )
            )
        for i, pattern in enumerate(cls.constraints.allowedZones):
            if not any(fnmatch.fnmatchcase(z, pattern) for z in known_zones):
                out.append(
                    (
                        (*base, "constraints", "allowedZones", i),
                        f"zone pattern {pattern!r} matches no zone of the built-in table or of "
                        "carbon.static / carbon.zones; zone keys look like 'DE', 'SE-SE3', "
                        "'US-CAL-CISO'",
                    )
                )
    return out
