"""Assemble a running lowcarb service: policy store, carbon cache, cluster state, Kubernetes sync,
binder, ledger, HTTP app, and the lifespan that starts and stops their background tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from fastapi import APIRouter, FastAPI

from carbon.accounting.emissions import Accountant, ChainHistory
from carbon.cache import CarbonCache
from carbon.config import load_carbon_section
from carbon.types import CarbonView
from carbon.zones import ZoneMapper
from scheduler import wire
from scheduler.cluster.state import ClusterState
from scheduler.engine import EngineStore
from scheduler.explain import explain_router
from scheduler.extender.http import create_app
from scheduler.extender.records import LedgerSink
from scheduler.extender.report import report_router
from scheduler.extender.routes import DEFAULT_MAX_BODY
from scheduler.extender.service import Extender
from scheduler.gates.webhook import router as admission_router
from scheduler.policy.model import Policy

if TYPE_CHECKING:
    from scheduler.kube.client import KubeConfig

log = structlog.get_logger("lowcarb.app")


@dataclass(slots=True)
class ServeOptions:
    policy: Path | None = None
    url_prefix: str = ""
    kubeconfig: Path | None = None
    in_cluster: bool = False
    kube_config: KubeConfig | None = None  # already loaded (lowcarb serve checks it first)
    ledger: Path | None = None
    max_body: int = DEFAULT_MAX_BODY
    policy_poll_s: float = 2.0
    accounting_interval_s: float = 300.0
    accounting_settle_s: float = 3600.0

    @property
    def cluster_mode(self) -> bool:
        return self.in_cluster or self.kubeconfig is not None


@dataclass
class Runtime:
    """Everything a serving process holds; ``app`` is the ASGI application."""

    options: ServeOptions
    store: EngineStore
    cache: CarbonCache
    state: ClusterState
    extender: Extender
    sync: Any = None
    ledger: LedgerSink | None = None
    app: FastAPI = field(init=False)

    def ready(self) -> tuple[bool, str]:
        if self.options.cluster_mode and not self.state.synced:
            return False, "waiting for the node and pod cache to sync with the API server"
        return True, "ok"

    def carbon_view(self) -> CarbonView:
        return self.cache.view()


class ObservedState:
    """The cluster state as the watch feeds it, also telling the ledger when pods run and end."""

    def __init__(self, state: ClusterState, ledger: LedgerSink) -> None:
        self.state = state
        self.ledger = ledger

    def upsert_node(self, node: wire.Node) -> None:
        self.state.upsert_node(node)

    def delete_node(self, name: str) -> None:
        self.state.delete_node(name)

    def upsert_pod(self, pod: wire.Pod) -> None:
        self.state.upsert_pod(pod)
        self.ledger.observe_pod(pod)

    def delete_pod(self, uid: str) -> None:
        self.state.delete_pod(uid)
        self.ledger.pod_gone(uid)

    def replace_all(
        self, nodes: Iterable[wire.Node] | None, pods: Iterable[wire.Pod] | None
    ) -> None:
        pods = list(pods) if pods is not None else None
        self.state.replace_all(nodes, pods)
        for pod in pods or ():
            self.ledger.observe_pod(pod)

    def mark_synced(self) -> None:
        self.state.mark_synced()


def build_runtime(options: ServeOptions, *, routers: list[APIRouter] | None = None) -> Runtime:
    store = EngineStore(options.policy)
    carbon_config = load_carbon_section(store.policy.carbon)
    cache = CarbonCache(carbon_config)
    mapper = ZoneMapper.from_config(carbon_config)
    state = ClusterState(zone_of=mapper.zone_for)

    def on_policy(policy: Policy) -> None:
        config = load_carbon_section(policy.carbon)
        cache.reconfigure(config)
        state.set_zone_of(ZoneMapper.from_config(config).zone_for)

    store.on_change(on_policy)

    ledger = None
    if options.ledger is not None:
        ledger = LedgerSink.open(options.ledger)

    sync = binder = gate_ctl = None
    if options.cluster_mode:
        from scheduler.kube.client import Binder, ClusterSync, load_config

        config = options.kube_config or load_config(
            str(options.kubeconfig) if options.kubeconfig else None, in_cluster=options.in_cluster
        )
        sink = ObservedState(state, ledger) if ledger is not None else state
        sync = ClusterSync(sink, config)
        binder = Binder(sync.client)
        from scheduler.gates.controller import controller_for  # temporal shifting (issue 7)

        gate_ctl = controller_for(
            sync.client,
            lambda: store.policy,
            cache,
            state,
            ledger=ledger.ledger if ledger is not None else None,
        )

    async def _account(sink: LedgerSink) -> None:
        """Turn finished pods into usage rows (energy, emissions from history), every 5 min."""
        policy = store.policy
        history = ChainHistory(lambda: [cache.providers()[n] for n in cache.config.fallback])
        accountant = Accountant(sink.ledger, history, power=policy.power, policy=policy.accounting)
        await accountant.run(options.accounting_interval_s, options.accounting_settle_s)

    extender = Extender(
        state=state,
        engine=store.engine,
        carbon=cache.view,
        binder=binder,
        synced=(lambda: state.synced) if options.cluster_mode else (lambda: True),
    )
    extender.ledger = ledger
    runtime: Runtime

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await cache.start()
        store.start(options.policy_poll_s)
        if sync is not None:
            await sync.start()
        if gate_ctl is not None:
            await gate_ctl.start()
        accounting: asyncio.Task[None] | None = None
        if ledger is not None:
            accounting = asyncio.get_running_loop().create_task(_account(ledger), name="accounting")
        # what start-up built (modules, policy, the first sync) lives as long as the process:
        # keep it out of the collector's full passes, which would walk it all (tail latency)
        gc.freeze()
        log.info("lowcarb serving", cluster_mode=options.cluster_mode, prefix=options.url_prefix)
        try:
            yield
        finally:
            if accounting is not None:
                accounting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await accounting
            if gate_ctl is not None:
                await gate_ctl.stop()
            if binder is not None:
                await binder.drain()  # annotation patches still in flight
            if sync is not None:
                await sync.stop()
            await store.stop()
            await cache.stop()
            if ledger is not None:
                ledger.close()

    runtime = Runtime(options, store, cache, state, extender, sync=sync, ledger=ledger)
    service_routers = [
        *(routers or []),
        explain_router(runtime),
        report_router(options.ledger),
        # the webhook that gives opted-in classes the carbon-window gate at pod creation
        admission_router(lambda: store.policy),
    ]
    runtime.app = create_app(
        extender,
        url_prefix=options.url_prefix,
        max_body=options.max_body,
        ready=runtime.ready,
        routers=service_routers,
        lifespan=lifespan,
    )
    return runtime
