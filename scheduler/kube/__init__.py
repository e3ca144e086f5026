"""Everything that talks to the Kubernetes API server; the names below are its public API.

Modules, each with one job:

* :mod:`~scheduler.kube.config`: where the API server is and how to authenticate;
* :mod:`~scheduler.kube.errors`: the ``Status`` body and the errors read from it;
* :mod:`~scheduler.kube.client`: the HTTP client (lists, watches, pod get/patch, Binding,
  Events) and :data:`REQUIRED_PERMISSIONS`;
* :mod:`~scheduler.kube.events`: Event bodies (events.k8s.io/v1 or core v1);
* :mod:`~scheduler.kube.reflector`: list + watch of one collection, relist on 410, backoff;
* :mod:`~scheduler.kube.sync`: nodes and bound pods into the cluster state;
* :mod:`~scheduler.kube.binder`: the extender's bind verb.

The backoff is :class:`carbon.backoff.Backoff`, shared with the carbon cache.
"""

from carbon.backoff import Backoff
from scheduler.kube.binder import Binder
from scheduler.kube.client import REQUIRED_PERMISSIONS, KubeClient, PatchType
from scheduler.kube.config import KubeConfig, load_config
from scheduler.kube.errors import ApiError, ApiUnavailable, Expired, KubeError, Status
from scheduler.kube.events import micro_time
from scheduler.kube.reflector import (
    ASSIGNED_NONTERMINAL,
    UNASSIGNED,
    Handler,
    Reflector,
    node_reflector,
    pod_reflector,
)
from scheduler.kube.sync import ClusterSync, StateSink, holds_resources

__all__ = [
    "ASSIGNED_NONTERMINAL",
    "REQUIRED_PERMISSIONS",
    "UNASSIGNED",
    "ApiError",
    "ApiUnavailable",
    "Backoff",
    "Binder",
    "ClusterSync",
    "Expired",
    "Handler",
    "KubeClient",
    "KubeConfig",
    "KubeError",
    "PatchType",
    "Reflector",
    "StateSink",
    "Status",
    "holds_resources",
    "load_config",
    "micro_time",
    "node_reflector",
    "pod_reflector",
]
