"""Where the API server is and how to authenticate: :class:`KubeConfig` and :func:`load_config`.

Auth and connection settings come from the ``kubernetes`` package's config loaders (kubeconfig or
in-cluster service account), imported only when a cluster is used; tokens are read fresh per
request so rotating in-cluster tokens and exec plugins keep working.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, field

from scheduler.kube.errors import KubeError


@dataclass
class KubeConfig:
    """Where the API server is and how to authenticate (built by :func:`load_config`)."""

    host: str
    token: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True
    #: Returns a fresh ``Authorization`` header value (rotating in-cluster tokens, exec plugins).
    token_provider: Callable[[], str | None] | None = field(default=None, repr=False)

    def authorization(self) -> str | None:
        if self.token_provider is not None:
            value = self.token_provider()
            if value:
                return value
        return f"Bearer {self.token}" if self.token else None

    def ssl_context(self) -> ssl.SSLContext | bool:
        """TLS settings for the API client: the cluster CA and the client certificate, if any.

        ``insecure-skip-tls-verify`` turns server verification off but still presents the
        client certificate (x509 client auth).
        """
        if not self.host.startswith("https"):
            return False
        ctx = ssl.create_default_context(cafile=self.ca_file if self.verify else None)
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


def load_config(
    kubeconfig: str | None = None, *, in_cluster: bool = False, context: str | None = None
) -> KubeConfig:
    """Read a kubeconfig file (or the in-cluster service account) with the kubernetes package.

    Raises :class:`KubeError` with the file and the fix when the config cannot be loaded.
    """
    from kubernetes import client as k8s_client  # heavy import: only when a cluster is used
    from kubernetes import config as k8s_config

    cfg = k8s_client.Configuration()
    try:
        if in_cluster:
            k8s_config.load_incluster_config(client_configuration=cfg)
        else:
            k8s_config.load_kube_config(
                config_file=kubeconfig, context=context, client_configuration=cfg
            )
    except Exception as exc:  # the loaders raise several unrelated types
        where = "in-cluster service account" if in_cluster else f"kubeconfig {kubeconfig or '~'}"
        fix = (
            "run inside a pod with a service account"
            if in_cluster
            else "pass --kubeconfig FILE pointing at a valid kubeconfig"
        )
        raise KubeError(f"cannot load {where}: {exc}; {fix}") from exc

    def provider() -> str | None:
        # newer clients keep the header under "BearerToken", older ones under "authorization";
        # the refresh hook (exec plugins, rotating in-cluster tokens) updates it in place
        for key in ("BearerToken", "authorization"):
            value = cfg.get_api_key_with_prefix(key)
            if value:
                return str(value)
        return None

    return KubeConfig(
        host=str(cfg.host).rstrip("/"),
        ca_file=cfg.ssl_ca_cert,
        cert_file=cfg.cert_file,
        key_file=cfg.key_file,
        verify=bool(cfg.verify_ssl),
        token_provider=provider,
    )
