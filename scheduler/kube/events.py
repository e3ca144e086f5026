"""Kubernetes Events about a pod: the request body and path, in either API (no I/O here).

``events.k8s.io/v1`` (the default) or core ``v1``; :meth:`scheduler.kube.client.KubeClient.
create_event` sends what :func:`event_request` builds. Timestamps follow the API server's rules
(``eventTime`` is a ``MicroTime`` with exactly six fractional digits).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any, Literal

from scheduler import wire
from scheduler.names import EVENT_CONTROLLER

EventType = Literal["Normal", "Warning"]
EventApi = Literal["events.k8s.io", "core"]


def micro_time(when: datetime) -> str:
    """``metav1.MicroTime``: always exactly 6 fractional digits (the API server insists)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_request(
    pod: wire.Pod,
    *,
    reason: str,
    note: str,
    action: str,
    when: datetime,
    type_: EventType = "Normal",
    controller: str = EVENT_CONTROLLER,
    instance: str = "lowcarb",
    api: EventApi = "events.k8s.io",
) -> tuple[str, dict[str, Any]]:
    """(path, body) of the POST that records an Event about ``pod`` at ``when``."""
    meta = pod.metadata
    when = when.astimezone(UTC)
    ref = {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": meta.name,
        "namespace": meta.namespace,
        "uid": meta.uid,
        "resourceVersion": meta.resourceVersion,
    }
    name = f"{meta.name}.{when.strftime('%Y%m%d%H%M%S%f')}{random.randrange(16**4):04x}"
    if api == "events.k8s.io":
        return f"/apis/events.k8s.io/v1/namespaces/{meta.namespace}/events", {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": meta.namespace},
            "eventTime": micro_time(when),
            "reportingController": controller,
            "reportingInstance": instance,
            "action": action,
            "reason": reason,
            "regarding": ref,
            "note": note[:1024],
            "type": type_,
        }
    stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"/api/v1/namespaces/{meta.namespace}/events", {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": meta.namespace},
        "involvedObject": ref,
        "reason": reason,
        "message": note[:1024],
        "type": type_,
        "source": {"component": controller},
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
        "action": action,
        "reportingComponent": controller,
        "reportingInstance": instance,
    }
