"""What the placement benchmarks share: their common flags, bad input as one line, the report.

``placement_starts.py`` and ``placement_orders.py`` read the same flags (:func:`shared_parser`,
:func:`options`), skip without the datasets and print their tables then one JSON line
(:func:`report`); with ``placement_why.py`` they fail the same way on bad input (one line naming
the option, exit 2; :data:`BAD_INPUT` is what their inputs raise) and read ``--load-scale`` with
:func:`parse_scales`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console
from rich.table import Table

from carbon.datadir import data_dir
from carbon.series import SeriesError
from scheduler.cli.errors import one_line
from scheduler.sim.results import SimOptions
from scheduler.sim.trace import TraceError

#: what reading a run's inputs raises on bad input (an option, a trace, a series, a policy)
BAD_INPUT: tuple[type[Exception], ...] = (SeriesError, TraceError, ValueError)
#: the whole trace's 60 % and 90 % compressions (``placement.py --load-levels 60,90``)
SCALES = "2560.42,38559.38"
#: the default starts: the first day of each quarter, 00:00 UTC
QUARTERS = ("01-01", "04-01", "07-01", "10-01")


def shared_parser(doc: str) -> argparse.ArgumentParser:
    """A parser with the flags the start-by-start benchmarks share: --year, --seed, --starts,
    --zones, --pods and --policy (``doc``'s first line as its description)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--year", type=int, default=2022)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--starts", default=",".join(QUARTERS), help="MM-DD[Thh:mm], UTC")
    parser.add_argument("--zones", default=None, help="comma-separated grid zones")
    parser.add_argument("--pods", type=int, default=None, help="the trace's first N pods")
    parser.add_argument("--policy", default=None, help="a lowcarb policy file")
    return parser


def skip_without_data(name: str) -> None:
    """Exit 0 with a one-line reason when the shared datasets are not there."""
    if data_dir() is None:
        print(f"{name}: no data directory (set LOWCARB_DATA); skipped", file=sys.stderr)
        raise SystemExit(0)


def options(args: argparse.Namespace, **extra: Any) -> SimOptions:
    """The run's options from the flags the placement benchmarks share (--year, --seed, --pods,
    --policy, --zones) and ``extra``."""
    policy = None if args.policy is None else Path(args.policy)
    opts = SimOptions(year=args.year, seed=args.seed, pods=args.pods, policy=policy, **extra)
    if args.zones:
        opts = replace(opts, zones=tuple(z.strip() for z in args.zones.split(",") if z))
    return opts


def fail(err: Exception) -> NoReturn:
    """Bad input: one line naming the option (a policy error's lines joined), exit 2."""
    print(f"error: {one_line(str(err)) or type(err).__name__}", file=sys.stderr)
    raise SystemExit(2) from None


def report(
    name: str, args: argparse.Namespace, opts: SimOptions, tables: list[Table], **body: Any
) -> None:
    """The tables, then the JSON line: the benchmark, its year, seed, trace and zones, ``body``."""
    out = Console()
    for t in tables:
        out.print(t)
    quick = getattr(args, "quick", False)
    line = {
        "benchmark": name,
        "year": args.year,
        "seed": args.seed,
        "trace": "quick" if quick else (f"first {args.pods}" if args.pods else "full"),
        "zones": list(opts.zones),
        **body,
    }
    print(json.dumps(line))


def parse_scales(text: str) -> list[float]:
    """``--load-scale``: comma-separated positive compressions."""
    try:
        scales = [float(s) for s in text.split(",") if s.strip()]
    except ValueError:
        scales = []
    if not scales or any(not s > 0 for s in scales):
        raise ValueError(f"--load-scale: {text!r}; give positive numbers, e.g. {SCALES}")
    return scales
