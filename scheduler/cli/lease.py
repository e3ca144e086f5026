"""Leader-election options shared by ``lowcarb serve`` (cluster mode) and ``lowcarb gates run``.

``--leader-elect`` runs the gate controller only while this process holds a coordination.k8s.io
Lease (several replicas, one controller); the Lease's name, namespace and duration have
defaults that fit the shipped manifests. Mistakes are usage errors naming the option.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from scheduler.cli.errors import UsageError, positive

if TYPE_CHECKING:
    from scheduler.gates.leader import LeaseSettings

#: ``scheduler.gates.leader.DEFAULT_LEASE`` (that module is imported only when a command runs)
DEFAULT_LEASE = "lowcarb-gates"

LeaderElectOpt = Annotated[
    bool,
    typer.Option(
        "--leader-elect",
        help="Run the gate controller only while holding a Lease (one of several replicas)",
    ),
]
LeaseNameOpt = Annotated[str, typer.Option(help="Name of the gate controller's Lease")]
LeaseNamespaceOpt = Annotated[
    str | None,
    typer.Option(help="Namespace of the Lease (default: POD_NAMESPACE, the pod's, or default)"),
]
LeaseDurationOpt = Annotated[
    float,
    typer.Option(
        callback=positive,
        help="Seconds a standby waits for a silent leader (renews every 2/15, gives up at 2/3)",
    ),
]


def lease_settings(
    leader_elect: bool, name: str, namespace: str | None, duration_s: float
) -> LeaseSettings | None:
    """The Lease to elect on, or None without ``--leader-elect``."""
    from scheduler.gates.leader import LeaseSettings, default_namespace

    if not leader_elect:
        return None
    if not name.strip():
        raise UsageError("--lease-name", "is empty", "give a Lease name such as lowcarb-gates")
    try:
        return LeaseSettings.scaled(namespace or default_namespace(), name.strip(), duration_s)
    except ValueError as exc:
        raise UsageError("--lease-duration", str(exc), "give e.g. 15") from None
