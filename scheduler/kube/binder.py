"""The extender's bind verb against the API server: create the pod's ``Binding``.

The bind answer goes back to kube-scheduler as soon as the Binding is created (bounded by a
timeout below the extender's ``httpTimeout``); the decision annotations are merge-patched onto the
pod in the background (:meth:`Binder.drain` waits for them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import msgspec
import structlog

from scheduler.kube.client import KubeClient
from scheduler.kube.errors import ApiError, KubeError

log = structlog.get_logger("lowcarb.kube")

_encoder = msgspec.json.Encoder()


class Binder:
    """Binds pods for the extender's bind verb and records the decision as annotations.

    The bind verb answers as soon as the Binding is created (one API call, bounded by
    ``timeout_s``, which should stay below the extender's ``httpTimeout``); the annotation patch
    follows in the background (:meth:`drain` waits for it).
    """

    def __init__(self, client: KubeClient, *, timeout_s: float = 1.5) -> None:
        self.client = client
        self.timeout_s = timeout_s
        self._pending: set[asyncio.Task[None]] = set()

    async def bind(
        self,
        namespace: str,
        name: str,
        uid: str,
        node: str,
        annotations: Mapping[str, object] | None = None,
    ) -> str:
        """Create the Binding; return "" on success or the error text (never raises).

        Annotations are merge-patched after a successful bind (values coerced to strings, as
        the API server rejects anything else with 422). A failed annotation patch is logged
        but does not fail the bind: the pod is bound either way.
        """
        what = f"bind pod {namespace}/{name} to node {node}"
        try:
            await self.client.create_binding(namespace, name, uid, node, timeout=self.timeout_s)
        except ApiError as exc:
            return f"{what}: {exc.describe()}"
        except KubeError as exc:
            return f"{what}: API server unreachable: {exc}"
        if annotations:
            patch = {"metadata": {"annotations": {k: _as_str(v) for k, v in annotations.items()}}}
            task = asyncio.get_running_loop().create_task(self._annotate(namespace, name, patch))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
        return ""

    async def _annotate(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        try:
            await self.client.patch_pod(namespace, name, patch, "merge")
        except KubeError as exc:
            log.warning("annotate_failed", pod=f"{namespace}/{name}", error=str(exc))

    async def drain(self) -> None:
        """Wait for the annotation patches still in flight (tests, shutdown)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)


def _as_str(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict | bool) or value is None:
        return _encoder.encode(value).decode()
    return str(value)
