"""Placement quality benchmark (issues 6, 14): emissions, GPU time, stranded GPUs and waits.

Replays the openb GPU trace (real arrival and deletion times) on the 1,213 GPU nodes spread over
grid zones with real hourly intensity, through the very engine the extender serves
(:mod:`scheduler.sim.run`; no second implementation here). Per policy: tCO2e and share of the LP
bound's saving, GPU-hours, energy, mean slowdown against each pod's fastest feasible GPU model,
p95 job completion time, unallocated GPUs, pods waiting (pods that fit nowhere queue, never
dropped), mean/p95 wait and pods never placed. ``--load-levels real,60,90`` repeats the comparison
with arrivals compressed until k8s-default's peak allocated GPUs reach each percentage.
``--quick``: the first 2,000 pods on each GPU model's nodes cut to their share of the trace's
GPU request (290 nodes), so compressed arrivals can load the fleet; a few minutes on 2 cores.
Prints tables, writes PNGs to ``benchmarks/out/``, and prints one JSON line last. Same options
as ``lowcarb simulate``; tune on one ``--year``, report on the others:

    .venv/bin/python benchmarks/placement.py --quick --load-levels real,60,90 --year 2022
    .venv/bin/python benchmarks/placement.py --quick --load-levels real,60,90 --year 2023
    .venv/bin/python benchmarks/placement.py --load-scale 40 --slack 24
    .venv/bin/python benchmarks/placement.py --lwa DE --slack 24

``--known-durations`` (a diagnostic): every policy's engine is told each pod's real run time, as a
``lowcarb.dev/expected-duration`` annotation would tell lowcarb, instead of its class's expected
duration (1 h for ``default``); the JSON line then carries ``"known_durations": true``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from carbon.datadir import data_dir
from scheduler.cli.errors import command_app
from scheduler.cli.simulate import simulate

OUT = Path(__file__).resolve().parent / "out"


def main() -> None:
    if data_dir() is None:
        print("placement benchmark: no data directory (set LOWCARB_DATA); skipped", file=sys.stderr)
        raise SystemExit(0)
    argv = sys.argv[1:]
    if not any(a == "--plots" or a.startswith("--plots=") for a in argv):
        argv = [*argv, "--plots", str(OUT)]
    command_app(simulate)(argv, prog_name="placement.py")


if __name__ == "__main__":
    main()
