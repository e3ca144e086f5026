"""The extender's bind verb against the API server: one ``Binding`` per pod, annotations on it.

kube-apiserver's ``BindingREST`` (``pkg/registry/core/pod/storage/storage.go``,
``setPodNodeAndMetadata``) copies the Binding's ``metadata.annotations`` onto the pod in the same
storage update that sets ``spec.nodeName``, so the decision needs no second call (seen on a real
kube-apiserver v1.36.2: the first watch event showing the pod bound already carries them; the
fake API server in ``tests/support`` does the same).
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from scheduler.kube.client import KubeClient
from scheduler.kube.errors import ApiError, KubeError

_encoder = msgspec.json.Encoder()


class Binder:
    """Binds pods for the extender's bind verb, the decision annotations riding on the Binding.

    One API call per pod, bounded by ``timeout_s`` (which should stay below the extender's
    ``httpTimeout``): the API server sets ``spec.nodeName`` and copies the Binding's annotations
    onto the pod in one write, so a bound pod always carries lowcarb's decision and a pod that
    was not bound never does.
    """

    def __init__(self, client: KubeClient, *, timeout_s: float = 1.5) -> None:
        self.client = client
        self.timeout_s = timeout_s

    async def bind(
        self,
        namespace: str,
        name: str,
        uid: str,
        node: str,
        annotations: Mapping[str, object] | None = None,
    ) -> str:
        """Create the Binding; return "" on success or the error text (never raises).

        Annotation values are coerced to strings (the API server rejects anything else).
        """
        what = f"bind pod {namespace}/{name} to node {node}"
        strings = {k: _as_str(v) for k, v in annotations.items()} if annotations else None
        try:
            await self.client.create_binding(
                namespace, name, uid, node, strings, timeout=self.timeout_s
            )
        except ApiError as exc:
            return f"{what}: {exc.describe()}"
        except KubeError as exc:
            return f"{what}: API server unreachable: {exc}"
        return ""


def _as_str(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict | bool) or value is None:
        return _encoder.encode(value).decode()
    return str(value)
