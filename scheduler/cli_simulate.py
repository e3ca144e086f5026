"""``lowcarb simulate``: replay a pod trace against policies, print the table and the JSON line.

Same options as ``benchmarks/placement.py`` (which calls :func:`run`), plus ``--policy FILE`` (the
lowcarb policy to compare) and ``--ledger FILE`` (record the lowcarb run, or ``--ledger-policy``,
in a ledger that ``lowcarb report`` reads, with market-based and avoided emissions).
``--load-levels real,60,90`` adds one table per load level and a ``levels`` list to the JSON line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from carbon.series import SeriesError
from scheduler.sim_run import DEFAULT_ZONES, SimOptions, parse_load_levels
from scheduler.sim_trace import TraceError


def _zones(text: str) -> tuple[str, ...]:
    zones = tuple(z.strip() for z in text.split(",") if z.strip())
    if not zones:
        raise typer.BadParameter("give at least one zone, e.g. --zones NO,GB,DE-LU")
    return zones


def run(
    opts: SimOptions,
    *,
    plots: Path | None = None,
    ledger: Path | None = None,
    ledger_policy: str = "lowcarb",
) -> None:
    """Compare, print the table (stderr-safe rich output), write PNGs/ledger, JSON line last."""
    from scheduler.sim_report import print_results, write_plots
    from scheduler.sim_run import compare

    console = Console(stderr=True)
    try:
        with console.status("simulating") as status:
            c = compare(opts, progress=lambda n: status.update(f"simulating {n}"))
    except (TraceError, SeriesError, ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    if plots is not None:
        for path in write_plots(c, plots):
            console.print(f"wrote {path}", style="dim")
    if ledger is not None:
        from scheduler.sim_ledger import write_ledger

        if ledger_policy not in c.runs:
            typer.echo(
                f"error: --ledger-policy {ledger_policy!r} was not run; use one of "
                f"{', '.join(c.runs)}",
                err=True,
            )
            raise typer.Exit(code=2)
        rows = write_ledger(c, ledger_policy, ledger)
        console.print(f"ledger {ledger}: {rows} usage rows ({ledger_policy})", style="dim")
    out = Console()
    print_results(c, out if out.is_terminal else Console(width=320))


def simulate(
    zones: Annotated[
        str, typer.Option(help="Grid zones (folders under electricitymaps_portal), comma-separated")
    ] = ",".join(DEFAULT_ZONES),
    year: Annotated[
        int, typer.Option(help="Year of the zones' hourly series (tune on one, report on others)")
    ] = 2022,
    start: Annotated[
        str | None, typer.Option(help="Date the trace's time 0 is aligned to (default Jan 1)")
    ] = None,
    load_scale: Annotated[
        float, typer.Option(help="Compress arrivals this many times (durations kept)")
    ] = 1.0,
    load_levels: Annotated[
        str | None,
        typer.Option(
            help="Also run at these load levels, e.g. real,60,90: real arrival times and "
            "arrivals compressed until k8s-default's peak allocated GPUs reach ~N %"
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Node-to-zone shuffle and tie-break seed")] = 0,
    trace: Annotated[
        str, typer.Option(help="openb trace name (default, gpushare40, ...) or a CSV path")
    ] = "default",
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            help="Only the first 2,000 pods, on each GPU model's nodes cut to those pods' share "
            "of the trace's GPU request (so compressed arrivals can load the fleet)",
        ),
    ] = False,
    fleet_share: Annotated[
        float | None,
        typer.Option(help="Keep this share (0..1] of each GPU model's nodes (default: all)"),
    ] = None,
    pods: Annotated[int | None, typer.Option(help="Only the first N pods")] = None,
    slack: Annotated[
        float,
        typer.Option(
            help="Hours batch (QoS BE) pods may wait for a cleaner start; adds "
            "shift-only and lowcarb-shift"
        ),
    ] = 0.0,
    min_saving: Annotated[
        float, typer.Option(help="With --slack: hold only when the plan saves this share")
    ] = 0.1,
    lwa: Annotated[
        str | None,
        typer.Option(help="Single-zone Let's Wait Awhile setting on its 2020 series: DE, GB, FR"),
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option(help="The lowcarb policy (default policies/default.yaml)"),
    ] = None,
    power: Annotated[
        Path | None, typer.Option(help="Policy file whose power model is used (simulation.yaml)")
    ] = None,
    nodes: Annotated[
        Path | None, typer.Option(help="Node list CSV (default: openb GPU nodes)")
    ] = None,
    policies: Annotated[
        str | None,
        typer.Option(help="Only these policies, comma-separated (+ k8s-default)"),
    ] = None,
    plots: Annotated[
        Path | None, typer.Option(help="Write the PNG charts into this folder")
    ] = None,
    ledger: Annotated[
        Path | None, typer.Option(help="Record one run into this ledger (lowcarb report reads it)")
    ] = None,
    ledger_policy: Annotated[str, typer.Option(help="Which run --ledger records")] = "lowcarb",
) -> None:
    """Replay a GPU pod trace on a fleet spread over grid zones and compare placement policies."""
    try:
        levels = parse_load_levels(load_levels) if load_levels is not None else ()
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    opts = SimOptions(
        zones=_zones(zones),
        year=year,
        start=start,
        load_scale=load_scale,
        seed=seed,
        trace=trace,
        quick=quick,
        pods=pods,
        slack_h=slack,
        min_saving=min_saving,
        lwa=lwa,
        policy=policy,
        power=power,
        nodes=nodes,
        policies=_zones(policies) if policies else (),
        load_levels=levels,
        fleet_share=fleet_share,
    )
    run(opts, plots=plots, ledger=ledger, ledger_policy=ledger_policy)
