"""The gate controller's coordination.k8s.io/v1 Lease: its wire types and its three API calls.

:class:`LeaseLock` reads the Lease (None when there is none), creates it (409 AlreadyExists when
another candidate was first) and updates it with a PUT of the object as read, so the API server
checks its ``resourceVersion`` (409 Conflict when it changed since; a Lease refuses an update
without one). :data:`LEASE_PERMISSIONS` are the RBAC rules these calls need
(``deploy/kustomize/base/rbac-lowcarb.yaml``, Role ``lowcarb-gates-leader``). The election itself
is :mod:`scheduler.gates.leader`.
"""

from __future__ import annotations

from typing import Any

import msgspec

from scheduler.kube import ApiError, KubeClient

#: (api group, resource, verb) of every Lease call this module makes.
LEASE_PERMISSIONS: list[tuple[str, str, str]] = [
    ("coordination.k8s.io", "leases", "get"),
    ("coordination.k8s.io", "leases", "create"),
    ("coordination.k8s.io", "leases", "update"),
]


class LeaseSpec(msgspec.Struct, omit_defaults=True):
    """``coordination.k8s.io/v1`` LeaseSpec (the fields leader election uses)."""

    holderIdentity: str | None = None
    leaseDurationSeconds: int | None = None
    acquireTime: str | None = None
    renewTime: str | None = None
    leaseTransitions: int | None = None


class Lease(msgspec.Struct):
    """A Lease as read; ``metadata`` is kept whole so a PUT sends back what it read."""

    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    spec: LeaseSpec = msgspec.field(default_factory=LeaseSpec)

    @property
    def resource_version(self) -> str:
        return str(self.metadata.get("resourceVersion", ""))


_lease_decoder = msgspec.json.Decoder(Lease)
_encoder = msgspec.json.Encoder()


class LeaseLock:
    """GET, create and resourceVersion-checked update of one Lease through the kube client."""

    def __init__(self, client: KubeClient, namespace: str, name: str) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.collection = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        self.path = f"{self.collection}/{name}"

    async def get(self, timeout: float | None = None) -> Lease | None:
        """The Lease, or None when there is none yet (404)."""
        try:
            _, body = await self.client.request("GET", self.path, timeout=timeout)
        except ApiError as exc:
            if exc.code == 404:
                return None
            raise
        return _lease_decoder.decode(body)

    async def create(self, spec: LeaseSpec, timeout: float | None = None) -> Lease:
        """Create the Lease (ApiError 409 AlreadyExists when another candidate was first)."""
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": spec,
        }
        _, body = await self.client.request(
            "POST",
            self.collection,
            body=_encoder.encode(lease),
            content_type="application/json",
            timeout=timeout,
        )
        return _lease_decoder.decode(body)

    async def update(self, read: Lease, spec: LeaseSpec, timeout: float | None = None) -> Lease:
        """PUT ``spec`` onto the Lease as read (ApiError 409 Conflict when it changed since)."""
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": read.metadata,
            "spec": spec,
        }
        _, body = await self.client.request(
            "PUT",
            self.path,
            body=_encoder.encode(lease),
            content_type="application/json",
            timeout=timeout,
        )
        return _lease_decoder.decode(body)
