"""The composition root: every command's runtime is built here, and the serving process on top.

:func:`compose` builds the pieces every command is made of (:class:`Parts`: the live policy compiled
into the scoring engine, the carbon cache, the zone mapper, the cluster state, the ledger, and with
:meth:`Parts.connect` the Kubernetes sync and its client) from the command's options; ``lowcarb
serve`` (:func:`build_runtime`: binder, gate controller, accounting, HTTP app and the lifespan that
starts and stops their background tasks), ``gates run`` / ``gates plan``, ``explain`` and ``carbon
show`` all start from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from fastapi import APIRouter, FastAPI

from carbon.accounting.accountant import Accountant, ChainHistory
from carbon.aio import cancel_all
from carbon.cache import CarbonCache
from carbon.config import CarbonConfig
from carbon.types import CarbonView
from carbon.zones import ZoneMapper
from scheduler import wire
from scheduler.cluster import metrics as gpu_metrics
from scheduler.cluster.state import ClusterState
from scheduler.engine import EngineStore
from scheduler.explain import explain_router
from scheduler.extender.http import create_app
from scheduler.extender.inflight import DEFAULT_WAIT_S, InFlight
from scheduler.extender.records import LedgerSink
from scheduler.extender.report import report_router
from scheduler.extender.routes import DEFAULT_MAX_BODY
from scheduler.extender.service import Extender
from scheduler.extender.shortlist import DEFAULT_LIMIT as SHORTLIST
from scheduler.gates.webhook import router as admission_router
from scheduler.policy.model import Policy

if TYPE_CHECKING:
    from scheduler.gates.leader import LeaseSettings
    from scheduler.kube import ClusterSync, KubeClient, KubeConfig

log = structlog.get_logger("lowcarb.app")


@dataclass(slots=True)
class ServeOptions:
    policy: Path | None = None
    url_prefix: str = ""
    kubeconfig: Path | None = None
    in_cluster: bool = False
    kube_config: KubeConfig | None = None  # already loaded (lowcarb serve checks it first)
    ledger: Path | str | None = None  # a SQLite file or a postgresql:// URL
    max_body: int = DEFAULT_MAX_BODY
    policy_poll_s: float = 2.0
    accounting_interval_s: float = 300.0
    accounting_settle_s: float | None = None  # None: the policy's accounting.settleAfter
    lease: LeaseSettings | None = None  # run the gate controller only while holding this Lease
    bind_wait_s: float = DEFAULT_WAIT_S  # a shared-GPU filter's wait for binds in flight
    shortlist: int = SHORTLIST  # filter passes at most this many nodes, the cheapest (0: all)

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


@dataclass
class Parts:
    """The runtime pieces of a command, built by :func:`compose`."""

    store: EngineStore  # the live policy and its scoring engine
    cache: CarbonCache
    mapper: ZoneMapper  # region label -> grid zone (follows policy reloads)
    state: ClusterState
    ledger: LedgerSink | None = None
    sync: ClusterSync | None = None  # set by connect()

    @property
    def policy(self) -> Policy:
        return self.store.policy

    @property
    def client(self) -> KubeClient | None:
        return self.sync.client if self.sync is not None else None

    def connect(self, config: KubeConfig, *, pod_lifecycle: bool = False) -> ClusterSync:
        """Keep ``state`` in step with the cluster of ``config`` (nodes and bound pods); with
        ``pod_lifecycle`` the pod watch also writes each pod's start and end of running to the
        ledger (the serving process)."""
        from scheduler.kube import ClusterSync

        observed = ObservedState(self.state, self.ledger) if pod_lifecycle and self.ledger else None
        self.sync = ClusterSync(observed or self.state, config)
        return self.sync

    async def start(self, *, policy_poll_s: float | None = None) -> None:
        """Start the background work: carbon refreshes, the policy file watch (every
        ``policy_poll_s``; none when None), the cluster sync."""
        await self.cache.start()
        if policy_poll_s is not None:
            self.store.start(policy_poll_s)
        if self.sync is not None:
            await self.sync.start()

    async def stop(self) -> None:
        """Stop what :meth:`start` started (safe when it was not) and close the ledger."""
        if self.sync is not None:
            await self.sync.stop()
        await self.store.stop()
        await self.cache.stop()
        if self.ledger is not None:
            self.ledger.close()

    @contextlib.asynccontextmanager
    async def running(self, *, policy_poll_s: float | None = None) -> AsyncIterator[Parts]:
        """``start`` on entry, ``stop`` on exit (also when starting failed half-way)."""
        try:
            await self.start(policy_poll_s=policy_poll_s)
            yield self
        finally:
            await self.stop()


def compose(
    policy: Path | None = None,
    *,
    ledger: Path | str | None = None,
    zones: Iterable[str] = (),
    carbon: Callable[[CarbonConfig], CarbonConfig] | None = None,
    policy_warnings: bool = True,
) -> Parts:
    """The pieces every command is made of, from its options.

    ``policy``: the policy file (None: the embedded default); a bad one raises
    :class:`~scheduler.policy.validate.PolicyError` with every issue. ``ledger``: open this
    ledger, a SQLite file or a postgresql:// URL (:class:`~carbon.accounting.ledger.LedgerError`
    when it cannot be opened). ``zones``:
    grid zones to refresh from the start. ``carbon``: adjusts the policy's ``carbon:`` section
    before the cache and the zone mapper are built from it (``carbon show --provider``).
    ``policy_warnings``: log what ``policy validate`` would warn about (off for one-shot
    commands whose output is the point). A policy reload reconfigures the cache and the zone
    mapper (the Kubernetes connection is added by :meth:`Parts.connect`).
    """
    store = EngineStore(policy, warn=policy_warnings)
    adjust = carbon or (lambda config: config)
    config = adjust(store.policy.carbon)
    cache = CarbonCache(config, zones=zones)
    mapper = ZoneMapper.from_config(config)
    parts = Parts(store, cache, mapper, ClusterState(zone_of=mapper.zone_for))

    def on_policy(policy: Policy) -> None:
        config = adjust(policy.carbon)
        cache.reconfigure(config)
        parts.mapper = ZoneMapper.from_config(config)
        parts.state.set_zone_of(parts.mapper.zone_for)

    store.on_change(on_policy)
    if ledger is not None:
        parts.ledger = LedgerSink.open(ledger)
    return parts


def build_runtime(options: ServeOptions, *, routers: list[APIRouter] | None = None) -> Runtime:
    parts = compose(options.policy, ledger=options.ledger)
    store, cache, state, ledger = parts.store, parts.cache, parts.state, parts.ledger

    sync = binder = gate_ctl = None
    if options.cluster_mode:
        from scheduler.kube import Binder, load_config

        config = options.kube_config or load_config(
            str(options.kubeconfig) if options.kubeconfig else None, in_cluster=options.in_cluster
        )
        sync = parts.connect(config, pod_lifecycle=True)
        binder = Binder(sync.client)
        from scheduler.gates.controller import GateController, controller_for  # issue 7
        from scheduler.gates.leader import leader_only

        client = sync.client

        def make_gates() -> GateController:
            return controller_for(
                client,
                lambda: store.policy,
                cache,
                state,
                ledger=ledger.ledger if ledger is not None else None,
            )

        lease = options.lease
        gate_ctl = make_gates() if lease is None else leader_only(make_gates, client, lease)

    async def _account(sink: LedgerSink) -> None:
        """Turn finished pods into usage rows (energy, emissions from history), every 5 min."""
        policy = store.policy
        history = ChainHistory(lambda: [cache.providers()[n] for n in cache.config.fallback])
        accountant = Accountant(
            sink.ledger,
            history,
            power=policy.power,
            policy=policy.accounting,
            zones=lambda: state.full_table().zones,  # their emissions series start at 0
        )
        await accountant.run(options.accounting_interval_s, options.accounting_settle_s)

    extender = Extender(
        state=state,
        engine=store.engine,
        carbon=cache.view,
        binder=binder,
        synced=(lambda: state.synced) if options.cluster_mode else (lambda: True),
        inflight=InFlight(options.bind_wait_s),
        shortlist=options.shortlist,
    )
    extender.ledger = ledger
    runtime: Runtime

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await parts.start(policy_poll_s=options.policy_poll_s)
        gpu_metrics.watch(state)  # /metrics: GPUs total and free by zone, read at scrape time
        if gate_ctl is not None:
            await gate_ctl.start()
        accounting: asyncio.Task[None] | None = None
        if ledger is not None:
            accounting = asyncio.get_running_loop().create_task(_account(ledger), name="accounting")
        settle: asyncio.Task[Any] | None = None
        if ledger is not None and sync is not None:  # binds a previous process may have left open
            settle = asyncio.get_running_loop().create_task(
                ledger.settle(sync.client.get_pod), name="settle-intents"
            )
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
            if settle is not None:
                await cancel_all([settle])
            await parts.stop()  # the sync, the policy watch, the carbon cache, the ledger
            gpu_metrics.unwatch(state)

    runtime = Runtime(options, store, cache, state, extender, sync=sync, ledger=ledger)
    service_routers = [
        *(routers or []),
        explain_router(runtime),
        report_router(options.ledger, lambda: store.policy),
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
