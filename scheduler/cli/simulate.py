"""``lowcarb simulate``: replay a pod trace against policies, print the table and the JSON line.

Same options as ``benchmarks/placement.py`` (which calls :func:`run`), plus ``--policy FILE`` (the
lowcarb policy to compare) and ``--ledger FILE|URL`` (record the lowcarb run, or
``--ledger-policy``, in a ledger that ``lowcarb report`` reads, with market-based and avoided
emissions: a SQLite file or a ``postgresql://`` URL, read by the one parser that ``serve`` and
``gates run`` use, :func:`carbon.accounting.target.parse_target`).
``--load-levels real,60,90`` adds one table per load level and a ``levels`` list to the JSON line.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from carbon.accounting.target import LedgerTarget, describe_target, is_url, parse_target
from carbon.series import SeriesError, find_file, portal_root
from scheduler.cli.errors import (
    UsageError,
    blame,
    input_file,
    positive,
    require,
)
from scheduler.cli.inputs import ledger_option, policy_errors
from scheduler.cli.output import Column, Output, OutputOpt, WideOpt, csv_text, resolve
from scheduler.cli.output import console as output_console
from scheduler.sim.run import BASELINES, DEFAULT_ZONES, SHIFTED, SimOptions, parse_load_levels
from scheduler.sim.trace import TraceError


class LwaZone(StrEnum):
    DE = "DE"
    GB = "GB"
    FR = "FR"


def _names(option: str, text: str, example: str) -> tuple[str, ...]:
    names = tuple(z.strip() for z in text.split(",") if z.strip())
    require(bool(names), option, "nothing given", f"give a comma-separated list, e.g. {example}")
    return names


def check(
    opts: SimOptions, *, ledger: LedgerTarget | None = None, ledger_policy: str = "lowcarb"
) -> None:
    """Every input a run needs, checked before the (minutes-long) run starts."""
    from carbon.datadir import ENV_VAR
    from scheduler.sim.carbon import parse_start
    from scheduler.sim.run import lowcarb_policy, power_model
    from scheduler.sim.trace import load_nodes
    from scheduler.sim.trace import resolve_pod_file as resolve_trace

    with blame("--trace", TraceError):
        resolve_trace(opts.trace)
    if opts.start:
        with blame("--start", SeriesError):
            parse_start(opts.start)
    if not opts.lwa:
        with blame(ENV_VAR, SeriesError):
            portal_root()
        for zone in opts.zones:
            with blame("--zones", SeriesError, fix="give zones and a --year that the data holds"):
                find_file(zone, opts.year)
    with policy_errors("--policy"):
        lowcarb_policy(opts.policy)
    with blame("--power", ValueError), policy_errors("--power"):
        power_model(opts.power)
    if opts.nodes is not None:
        with blame("--nodes", TraceError):
            load_nodes(opts.nodes)
    names = [*BASELINES, *(SHIFTED if opts.slack_h > 0 else ())]
    unknown = [n for n in opts.policies if n not in names]
    if unknown:
        extra = "" if opts.slack_h > 0 else f" ({', '.join(SHIFTED)} need --slack)"
        raise UsageError(
            "--policies", f"unknown {', '.join(unknown)}", f"choose from {', '.join(names)}{extra}"
        )
    runs = [n for n in names if not opts.policies or n in opts.policies or n == "k8s-default"]
    if ledger is not None and ledger_policy not in runs:
        raise UsageError(
            "--ledger-policy", f"{ledger_policy!r} is not run", f"use one of {', '.join(runs)}"
        )
    if is_url(ledger):  # a server that cannot be reached is said now, not after the run
        from carbon.accounting.ledger import LedgerError
        from carbon.accounting.postgres import connect

        with blame("--ledger", LedgerError):
            connect(str(ledger)).close()


def run(
    opts: SimOptions,
    *,
    plots: Path | None = None,
    ledger: LedgerTarget | None = None,
    ledger_policy: str = "lowcarb",
    output: Output = Output.table,
    wide: bool = True,
) -> None:
    """Compare, print the table (stderr-safe rich output), write PNGs/ledger, JSON line last.

    ``output``: the tables and the JSON line (table), the JSON line alone (json), or one CSV row
    per policy and load level with every column (csv). ``wide``: every column in the tables
    (benchmarks/placement.py); ``lowcarb simulate`` shows the ones that fit 80 unless --wide.
    """
    import json

    from carbon.accounting.ledger import LedgerError
    from scheduler.sim.report import print_results, write_plots
    from scheduler.sim.report import rows as csv_rows
    from scheduler.sim.run import compare

    check(opts, ledger=ledger, ledger_policy=ledger_policy)
    console = Console(stderr=True)
    # the inputs were checked; what is left is the content of the data files they name
    with blame("", TraceError, SeriesError), console.status("simulating") as status:
        c = compare(opts, progress=lambda n: status.update(f"simulating {n}"))
    if plots is not None:
        with blame("--plots", OSError):
            paths = write_plots(c, plots)
        for path in paths:
            console.print(f"wrote {path}", style="dim")
    if ledger is not None:
        from scheduler.sim.ledger import write_ledger

        with blame("--ledger", LedgerError):
            rows = write_ledger(c, ledger_policy, ledger)
        name = describe_target(ledger)
        console.print(f"ledger {name}: {rows} usage rows ({ledger_policy})", style="dim")
    if output is Output.json:
        typer.echo(json.dumps(c.summary()))
    elif output is Output.csv:
        table_rows = csv_rows(c)
        columns = [Column(key, key) for key in dict.fromkeys(k for r in table_rows for k in r)]
        typer.echo(csv_text(columns, table_rows), nl=False)
    else:
        print_results(c, output_console(wide), wide=wide)


def _plots_dir(param: typer.CallbackParam, value: Path | None) -> Path | None:
    if value is not None and value.exists() and not value.is_dir():
        raise UsageError("--plots", f"{str(value)!r} is a file", "give a folder (created if new)")
    return value


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
        float,
        typer.Option(callback=positive, help="Compress arrivals this many times (durations kept)"),
    ] = 1.0,
    load_levels: Annotated[
        str | None,
        typer.Option(
            help="Also run at these load levels, e.g. real,60,90: real arrival times and "
            "arrivals compressed until k8s-default's peak allocated GPUs reach ~N %"
        ),
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="Node-to-zone shuffle and tie-break seed")] = 0,
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
        typer.Option(
            callback=positive,
            max=1.0,
            help="Keep this share (0..1] of each GPU model's nodes (default: all)",
        ),
    ] = None,
    pods: Annotated[int | None, typer.Option(min=1, help="Only the first N pods")] = None,
    slack: Annotated[
        float,
        typer.Option(
            min=0,
            help="Hours batch (QoS BE) pods may wait for a cleaner start; adds "
            "shift-only and lowcarb-shift",
        ),
    ] = 0.0,
    min_saving: Annotated[
        float,
        typer.Option(
            min=0, max=1, help="With --slack: hold only when the plan saves this share (0..1)"
        ),
    ] = 0.1,
    lwa: Annotated[
        LwaZone | None,
        typer.Option(
            case_sensitive=False,
            help="Single-zone Let's Wait Awhile setting on its 2020 series",
        ),
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option(
            callback=input_file, help="The lowcarb policy (default policies/default.yaml)"
        ),
    ] = None,
    power: Annotated[
        Path | None,
        typer.Option(
            callback=input_file, help="Policy file whose power model is used (simulation.yaml)"
        ),
    ] = None,
    nodes: Annotated[
        Path | None,
        typer.Option(callback=input_file, help="Node list CSV (default: openb GPU nodes)"),
    ] = None,
    policies: Annotated[
        str | None,
        typer.Option(help="Only these policies, comma-separated (+ k8s-default)"),
    ] = None,
    plots: Annotated[
        Path | None,
        typer.Option(callback=_plots_dir, help="Write the PNG charts into this folder"),
    ] = None,
    ledger: Annotated[
        str | None,
        typer.Option(
            callback=ledger_option,
            help="Record one run into this ledger (lowcarb report reads it): a SQLite file, "
            "or postgresql://USER@HOST/DB",
        ),
    ] = None,
    ledger_policy: Annotated[str, typer.Option(help="Which run --ledger records")] = "lowcarb",
    known_durations: Annotated[
        bool,
        typer.Option(
            "--known-durations",
            help="A diagnostic: every engine is told each pod's real run time (what a "
            "lowcarb.dev/expected-duration annotation gives) instead of its class's",
        ),
    ] = False,
    node_order: Annotated[
        int,
        typer.Option(
            min=0,
            help="Node-order draw: fgd and lowcarb break near-ties by a fixed order (crc32 of "
            "the node name); K > 0 prefixes every name with oK- to draw another (0: the "
            "trace's names)",
        ),
    ] = 0,
    output: OutputOpt = None,
    wide: WideOpt = False,
) -> None:
    """Replay a GPU pod trace on a fleet spread over grid zones and compare placement policies.

    Prints the comparison table, then the JSON summary line (--output json: that line alone;
    --output csv: one row per policy and load level, every column).
    """
    with blame("--load-levels", ValueError):
        levels = parse_load_levels(load_levels) if load_levels is not None else ()
    opts = SimOptions(
        zones=_names("--zones", zones, "NO,GB,DE-LU"),
        year=year,
        start=start,
        load_scale=load_scale,
        seed=seed,
        trace=trace,
        quick=quick,
        pods=pods,
        slack_h=slack,
        min_saving=min_saving,
        lwa=lwa.value if lwa is not None else None,
        policy=policy,
        power=power,
        nodes=nodes,
        policies=_names("--policies", policies, "fgd,lowcarb") if policies is not None else (),
        load_levels=levels,
        fleet_share=fleet_share,
        known_durations=known_durations,
        node_order=node_order,
    )
    run(
        opts,
        plots=plots,
        ledger=parse_target(ledger) if ledger is not None else None,
        ledger_policy=ledger_policy,
        output=resolve(output),
        wide=wide,
    )
