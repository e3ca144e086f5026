"""``lowcarb gates``: run the temporal-shift gate controller alone, or show its current plan.

``lowcarb gates run`` keeps a node cache (for the zones a pod may run in), the carbon cache and
the controller running until interrupted. ``lowcarb gates plan`` lists the gated pods once and
prints what the controller would do now (no patch, no Event).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from carbon.accounting.target import LedgerTarget, parse_target
from scheduler.cli.errors import UsageError, blame, input_file, new_app, positive
from scheduler.cli.inputs import check_cluster_options, kube_config, ledger_option, policy_errors
from scheduler.cli.lease import (
    DEFAULT_LEASE,
    LeaderElectOpt,
    LeaseDurationOpt,
    LeaseNameOpt,
    LeaseNamespaceOpt,
    lease_settings,
)
from scheduler.cli.output import Column, Output, OutputOpt, WideOpt, emit, resolve

if TYPE_CHECKING:
    from scheduler.app import Parts
    from scheduler.gates.leader import LeaseSettings

app = new_app(
    help="Temporal shifting: hold pods gated with lowcarb.dev/carbon-window until a cleaner hour.",
)

KubeconfigOpt = Annotated[
    Path | None,
    typer.Option(callback=input_file, help="kubeconfig of the cluster (default: ~/.kube/config)"),
]
InClusterOpt = Annotated[bool, typer.Option("--in-cluster", help="Use the pod's service account")]
PolicyOpt = Annotated[
    Path | None,
    typer.Option(callback=input_file, help="Policy YAML (classes' temporalShift, carbon sources)"),
]


@contextlib.asynccontextmanager
async def _cluster(
    kubeconfig: Path | None,
    in_cluster: bool,
    policy: Path | None,
    ledger: LedgerTarget | None = None,
    *,
    policy_warnings: bool = True,
) -> AsyncIterator[Parts]:
    """The runtime of the composition root, connected to the cluster, running until exit."""
    from carbon.accounting.ledger import LedgerError
    from scheduler.app import compose

    with policy_errors("--policy"), blame("--ledger", LedgerError):
        parts = compose(policy, ledger=ledger, policy_warnings=policy_warnings)
    try:
        parts.connect(kube_config(kubeconfig, in_cluster))
    except BaseException:
        await parts.stop()  # closes the ledger
        raise
    async with parts.running():
        yield parts


@app.command()
def run(
    kubeconfig: KubeconfigOpt = None,
    in_cluster: InClusterOpt = False,
    policy: PolicyOpt = None,
    ledger: Annotated[
        str | None,
        typer.Option(
            callback=ledger_option,
            help="Ledger for gate records: a SQLite file, or postgresql://USER@HOST/DB",
        ),
    ] = None,
    tick: Annotated[
        float, typer.Option(callback=positive, help="Seconds between planning passes")
    ] = 30.0,
    metrics_port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="Serve Prometheus metrics on 127.0.0.1:PORT"),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Plan and log, but never patch pods or post Events")
    ] = False,
    leader_elect: LeaderElectOpt = False,
    lease_name: LeaseNameOpt = DEFAULT_LEASE,
    lease_namespace: LeaseNamespaceOpt = None,
    lease_duration: LeaseDurationOpt = 15.0,
) -> None:
    """Run the gate controller until interrupted (SIGINT/SIGTERM)."""
    from scheduler.cli.logs import configure_logging

    check_cluster_options(kubeconfig, in_cluster)
    lease = lease_settings(leader_elect, lease_name, lease_namespace, lease_duration)
    configure_logging()
    if metrics_port is not None:
        from prometheus_client import start_http_server

        try:
            start_http_server(metrics_port, addr="127.0.0.1")
        except OSError as exc:
            raise UsageError(
                "--metrics-port",
                f"cannot listen on 127.0.0.1:{metrics_port} ({exc.strerror or exc})",
                "choose a free port",
            ) from None
    target = parse_target(ledger) if ledger is not None else None
    asyncio.run(_run(kubeconfig, in_cluster, policy, target, tick, dry_run, lease))


async def _run(
    kubeconfig: Path | None,
    in_cluster: bool,
    policy: Path | None,
    ledger_path: LedgerTarget | None,
    tick: float,
    dry_run: bool,
    lease: LeaseSettings | None = None,
) -> None:
    from scheduler.gates.controller import GateController, GateSettings, controller_for
    from scheduler.gates.leader import Service, leader_only

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with _cluster(kubeconfig, in_cluster, policy, ledger_path) as parts:
        client = parts.client
        assert client is not None

        def make() -> GateController:
            return controller_for(
                client,
                lambda: parts.policy,
                parts.cache,
                parts.state,
                ledger=parts.ledger.ledger if parts.ledger is not None else None,
                settings=GateSettings(tick_s=tick),
                dry_run=dry_run,
            )

        # with --leader-elect, a fresh controller runs only while this process leads
        ctl: Service = make() if lease is None else leader_only(make, client, lease)
        await ctl.start()
        try:
            await stop.wait()
        finally:
            await ctl.stop()


PLAN_COLUMNS = (
    Column("pod", "pod"),
    Column("group", "group", narrow=False),
    Column("zone", "zone"),
    Column("decision", "decision"),
    Column("release", "release", narrow=False),
    Column("release_in", "in", right=True),
    Column("mean_now", "now g/kWh", narrow=False, right=True, fmt=lambda v: f"{v:.0f}"),
    Column("mean_at", "then g/kWh", narrow=False, right=True, fmt=lambda v: f"{v:.0f}"),
    Column("why", "why"),
)


@app.command()
def plan(
    kubeconfig: KubeconfigOpt = None,
    in_cluster: InClusterOpt = False,
    policy: PolicyOpt = None,
    output: OutputOpt = None,
    wide: WideOpt = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Same as --output json: one JSON object per pod")
    ] = False,
    timeout: Annotated[
        float, typer.Option(callback=positive, help="Seconds to wait for the cluster")
    ] = 30.0,
) -> None:
    """Show, for every gated pod, what the controller would decide now (changes nothing)."""
    from scheduler.cli.logs import configure_logging

    fmt = resolve(output, as_json)
    check_cluster_options(kubeconfig, in_cluster)
    configure_logging("warning")  # stdout carries the plan only (structlog's default is stdout)
    rows = asyncio.run(_plan(kubeconfig, in_cluster, policy, timeout))
    if fmt is Output.json:
        for row in rows:
            typer.echo(json.dumps(row, sort_keys=True))
        return
    from carbon.clock import wall

    now = wall()
    shown = [{**r, "release_in": _release_in(r["release"], now)} for r in rows]
    emit(fmt, PLAN_COLUMNS, shown, title=f"Gated pods ({len(rows)})", wide=wide)


def _release_in(release: str | None, now: float) -> str:
    """``now``, or the wait until the planned release (``3h20m``), for the narrow table."""
    if release is None:
        return "now"
    seconds = max(0, int(datetime.fromisoformat(release).timestamp() - now))
    hours, rest = divmod(seconds // 60, 60)
    return f"{hours}h{rest:02d}m" if hours else f"{rest}m"


async def _plan(
    kubeconfig: Path | None, in_cluster: bool, policy: Path | None, timeout: float
) -> list[dict[str, Any]]:
    from scheduler import kube
    from scheduler.gates.controller import GateSettings, _GateHandler, controller_for

    async with _cluster(kubeconfig, in_cluster, policy, policy_warnings=False) as parts:
        assert parts.sync is not None and parts.client is not None
        if not await parts.sync.wait_synced(timeout):
            raise UsageError(
                "--timeout",
                f"the node cache did not sync within {timeout:g}s",
                "check that the cluster of the kubeconfig answers, or give a longer --timeout",
            )
        ctl = controller_for(
            parts.client,
            lambda: parts.policy,
            parts.cache,
            parts.state,
            settings=GateSettings(forecast_grace_s=0.0),
            dry_run=True,
        )
        reflector = kube.pod_reflector(parts.client, _GateHandler(ctl), kube.UNASSIGNED)
        await reflector.relist()
        for h in ctl.held.values():  # ask the carbon cache for these zones, then fetch once
            parts.cache.track(ctl.rules_for(h.pod).zones)
        await parts.cache.refresh_once()
        now = ctl.clock()
        due = {h.uid: (reason, note) for h, reason, note in ctl.plan(now)}
        rows = []
        for h in ctl.held.values():
            reason, note = due.get(h.uid, ("hold", ""))
            if h.uid not in due and h.mean_now and h.mean_at is not None:
                note = ctl._note("held", h, 1.0 - h.mean_at / h.mean_now, now)
            rows.append(
                {
                    "pod": h.key,
                    "group": h.group,
                    "zone": h.zone,
                    "decision": "release" if h.uid in due else "hold",
                    "release": None
                    if h.uid in due or h.planned is None
                    else datetime.fromtimestamp(h.planned, UTC).isoformat(),
                    "mean_now": h.mean_now,
                    "mean_at": h.mean_at,
                    "why": note or reason,
                }
            )
        return rows
