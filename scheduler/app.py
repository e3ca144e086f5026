"""Assemble a running lowcarb service: policy store, carbon cache, cluster state, Kubernetes sync,
binder, ledger, HTTP app, and the lifespan that starts and stops their background tasks.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from carbon.cache import CarbonCache
from starlette.applications import Starlette
from starlette.routing import BaseRoute

from carbon.config import load_carbon_section
from carbon.types import CarbonView
from carbon.zones import ZoneMapper
from scheduler.api import DEFAULT_MAX_BODY, create_app
from scheduler.cluster import ClusterState
from scheduler.policy import Policy
from scheduler.policy_store import PolicyStore
from scheduler.service import Extender

log = structlog.get_logger("lowcarb.app")


@dataclass(slots=True)
class ServeOptions:
    policy: Path | None = None
    url_prefix: str = ""
    kubeconfig: Path | None = None
    in_cluster: bool = False
    ledger: Path | None = None
    max_body: int = DEFAULT_MAX_BODY
    policy_poll_s: float = 2.0

    @property
    def cluster_mode(self) -> bool:
        return self.in_cluster or self.kubeconfig is not None


@dataclass
class Runtime:
    """Everything a serving process holds; ``app`` is the ASGI application."""

    options: ServeOptions
    store: PolicyStore
    cache: CarbonCache
    state: ClusterState
    extender: Extender
    app: Starlette
    sync: Any = None
    ledger: Any = None

    def ready(self) -> tuple[bool, str]:
        if self.options.cluster_mode and not self.state.synced:
            return False, "waiting for the node and pod cache to sync with the API server"
        return True, "ok"

    def carbon_view(self) -> CarbonView:
        return self.cache.view()


def build_runtime(options: ServeOptions, *, extra_routes: list[BaseRoute] | None = None) -> Runtime:
    store = PolicyStore(options.policy)
    carbon_config = load_carbon_section(store.policy.carbon)
    cache = CarbonCache(carbon_config)
    mapper = ZoneMapper.from_config(carbon_config)
    state = ClusterState(zone_of=mapper.zone_for)

    def on_policy(policy: Policy) -> None:
        cache.reconfigure(load_carbon_section(policy.carbon))

    store.on_change(on_policy)

    sync = binder = None
    if options.cluster_mode:
        from scheduler.kube import ClusterSync, KubeClient

        client = KubeClient.from_config(
            kubeconfig=str(options.kubeconfig) if options.kubeconfig else None,
            in_cluster=options.in_cluster,
        )
        sync = ClusterSync(state, client)
        binder = client.binder()

    ledger = None
    if options.ledger is not None:
        from scheduler.records import LedgerSink

        ledger = LedgerSink.open(options.ledger)

    extender = Extender(state=state, engine=store.engine, carbon=cache.view, binder=binder)
    extender.ledger = ledger
    runtime: Runtime

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await cache.start()
        store.start(options.policy_poll_s)
        if sync is not None:
            await sync.start()
        log.info("lowcarb serving", cluster_mode=options.cluster_mode, prefix=options.url_prefix)
        try:
            yield
        finally:
            if sync is not None:
                await sync.stop()
            await store.stop()
            await cache.stop()
            if ledger is not None:
                ledger.close()

    app = create_app(
        extender,
        url_prefix=options.url_prefix,
        max_body=options.max_body,
        ready=lambda: runtime.ready(),
        extra_routes=extra_routes or [],
        lifespan=lifespan,
    )
    runtime = Runtime(options, store, cache, state, extender, app, sync, ledger)
    return runtime
