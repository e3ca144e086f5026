"""Placement quality benchmark (issue 6): emissions, stranded GPUs and waits against baselines.

Replays the openb GPU trace (real arrival and deletion times) on the 1,213 GPU nodes spread over
grid zones with real hourly intensity, through the very engine the extender serves
(:mod:`scheduler.sim.run`; no second implementation here). Prints a table, writes PNGs to
``benchmarks/out/``, and prints one JSON line last. Same options as ``lowcarb simulate``:

    .venv/bin/python benchmarks/placement.py --quick
    .venv/bin/python benchmarks/placement.py --load-scale 40 --slack 24
    .venv/bin/python benchmarks/placement.py --lwa DE --slack 24
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
