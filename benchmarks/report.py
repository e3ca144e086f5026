"""Ledger and report cost: append latency per decision, bulk load, reports over a million rows.

1. Append cost per decision on the service's event loop: sequential ``append_async`` (one
   decision at a time, each waiting for its fsync'd commit) and a burst of concurrent appends
   (group commit), with ``synchronous=FULL`` (default) and ``NORMAL``.
2. A ledger of ``--rows`` accounted pods (default 1,000,000; 50 namespaces, 3 classes, 16 zones,
   2,000 nodes, ~125k jobs over a year), bulk-loaded through ``Ledger.append_many``.
3. ``build_report`` timings per format and grouping, as ``lowcarb report`` runs them, and the
   PNG chart. The job grouping is the training-run footprint (model-card metadata).

Prints a table, then one JSON line: {"benchmark": "report", ...}.

    .venv/bin/python benchmarks/report.py [--rows 1000000] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from carbon.accounting.ledger import (
    Ledger,
    LifecycleRecord,
    PlacementRecord,
    Synchronous,
    UsageRecord,
)
from carbon.accounting.report import ReportOptions, build_report

ZONES = ("DE", "FR", "GB", "SE", "PL", "ES", "NO", "US-CAL-CISO", "US-TEX-ERCO", "US-MIDA-PJM",
         "CA-ON", "JP-TK", "KR", "SG", "AU-NSW", "IN-WE")  # fmt: skip
CLASSES = ("training", "batch", "inference")
GPUS = ("NVIDIA-A100-SXM4-80GB", "NVIDIA-H100-80GB-HBM3", "Tesla-V100-SXM2-16GB", "NVIDIA-L4")
T0 = 1_672_531_200.0  # 2023-01-01T00:00Z


def usage_rows(n: int, seed: int = 7) -> list[UsageRecord]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        start = T0 + rng.random() * 365 * 86400
        hours = rng.choice((0.25, 1, 2, 4, 8, 24))
        gpus = rng.choice((0.5, 1, 1, 2, 4, 8))
        zone = ZONES[i % len(ZONES)]
        g = rng.uniform(20, 700)
        kwh = gpus * 0.35 * hours * 1.2
        loc = kwh * g / 1000
        cf = loc * rng.uniform(0.9, 1.4)
        job = i // 8  # 8 pods per training run, 125k runs per million pods
        ns = f"team-{job % 50:02d}"
        out.append(
            UsageRecord(
                uid=f"{i:08x}-pod", namespace=ns, name=f"pod-{i}",
                workload_class=CLASSES[i % 3], job=f"{ns}/Job/run-{job}",
                node=f"node-{i % 2000:04d}", zone=zone, gpu_model=GPUS[i % 4], start=start,
                end=start + hours * 3600,
                day=time.strftime("%Y-%m-%d", time.gmtime(start)), gpu_hours=gpus * hours,
                energy_kwh=kwh, co2e_location_kg=loc,
                co2e_market_kg=loc if i % 5 else kwh * 0.03,
                market_basis="location" if i % 5 else "contract",
                embodied_kg=gpus * hours * 0.02, counterfactual_kg=cf, avoided_kg=cf - loc,
                estimated_kg=loc if i % 11 == 0 else 0.0,
                method="model" if i % 7 else "kepler", accounted_at=start + hours * 3600,
            )
        )  # fmt: skip
    return out


def decision(i: int) -> PlacementRecord:
    return PlacementRecord(
        uid=f"d-{i:08d}", namespace="ml", name=f"p{i}", at=T0 + i, node=f"n{i % 64}",
        zone=ZONES[i % 16], workload_class="training", owner_kind="Job", owner_name=f"r{i}",
        gpu_model=GPUS[0], gpus=1, cpu_milli=8000, memory_bytes=64 * 2**30,
        intensity_g_per_kwh=300.0, intensity_source="electricitymaps", intensity_age_s=60.0,
        scores={"carbon": 0.9, "gpu_fit": 0.4}, score=10, counterfactual_kg=1.3, expected_kg=1.0,
    )  # fmt: skip


async def append_costs(path: Path, sync: Synchronous, n_seq: int, n_burst: int) -> dict[str, Any]:
    ledger = Ledger(path, synchronous=sync)
    try:
        lat = []
        for i in range(n_seq):
            t = time.perf_counter()
            await ledger.append_async(decision(i))
            lat.append(time.perf_counter() - t)
        recs = [decision(n_seq + i) for i in range(n_burst)]
        commits0 = ledger.commits
        t = time.perf_counter()
        await asyncio.gather(*(ledger.append_async(r) for r in recs))
        burst_s = time.perf_counter() - t
        # the loop-side cost: what the bind path pays before it can await (enqueue only)
        t = time.perf_counter()
        futs = [ledger.append(LifecycleRecord(uid=r.uid, event="start", at=T0)) for r in recs]
        enqueue_s = time.perf_counter() - t
        for f in futs:
            f.result()
    finally:
        ledger.close()
    lat.sort()
    return {
        "synchronous": sync,
        "sequential_p50_ms": round(statistics.median(lat) * 1e3, 3),
        "sequential_p99_ms": round(lat[int(len(lat) * 0.99) - 1] * 1e3, 3),
        "burst_records": n_burst,
        "burst_us_per_record": round(burst_s / n_burst * 1e6, 1),
        "burst_commits": ledger.commits - commits0,
        "enqueue_us_per_record": round(enqueue_s / n_burst * 1e6, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="100k rows, fewer appends")
    args = parser.parse_args()
    rows = 100_000 if args.quick else args.rows
    n_seq, n_burst = (200, 2000) if args.quick else (1000, 20000)

    with tempfile.TemporaryDirectory(prefix="lowcarb-bench-") as tmp:
        appends = [
            asyncio.run(append_costs(Path(tmp) / f"a-{s}.sqlite", s, n_seq, n_burst))
            for s in ("FULL", "NORMAL")
        ]  # type: list[dict[str, Any]]

        path = Path(tmp) / "ledger.sqlite"
        t = time.perf_counter()
        records = usage_rows(rows)
        gen_s = time.perf_counter() - t
        t = time.perf_counter()
        with Ledger(path) as ledger:
            assert ledger.append_many(records) == rows
        load_s = time.perf_counter() - t
        del records
        size_mb = path.stat().st_size / 2**20

        cases = [
            ("csv", ("namespace",)), ("json", ("namespace",)), ("parquet", ("namespace",)),
            ("csv", ("zone", "day")), ("csv", ("job",)), ("parquet", ("job",)),
            ("json", ("job",)), ("sci", ("job",)), ("csv", ("pod",)), ("parquet", ("pod",)),
            ("png", ("day",)),
        ]  # fmt: skip
        reports: list[dict[str, Any]] = []
        for fmt, group in cases:
            t, c = time.perf_counter(), time.process_time()
            body = build_report(path, ReportOptions(group_by=group, format=fmt))
            reports.append(
                {
                    "format": fmt,
                    "group_by": ",".join(group) if fmt != "png" else "day,zone",
                    "seconds": round(time.perf_counter() - t, 2),
                    "cpu_seconds": round(time.process_time() - c, 2),
                    "bytes": len(body),
                }
            )

    print(f"ledger appends ({n_seq} sequential, {n_burst} concurrent)")
    print(f"{'sync':<8}{'seq p50 ms':>11}{'seq p99 ms':>11}{'burst us/rec':>13}"
          f"{'commits':>9}{'enqueue us':>11}")  # fmt: skip
    for a in appends:
        print(
            f"{a['synchronous']:<8}{a['sequential_p50_ms']:>11}{a['sequential_p99_ms']:>11}"
            f"{a['burst_us_per_record']:>13}{a['burst_commits']:>9}"
            f"{a['enqueue_us_per_record']:>11}"
        )
    print(
        f"\n{rows:,} usage rows ({rows // 8:,} jobs): generated {gen_s:.1f} s, "
        f"bulk load {load_s:.1f} s, file {size_mb:.0f} MiB"
    )
    print(f"{'format':<9}{'group by':<12}{'seconds':>9}{'cpu s':>8}{'MiB out':>9}")
    for r in reports:
        print(
            f"{r['format']:<9}{r['group_by']:<12}{r['seconds']:>9}{r['cpu_seconds']:>8}"
            f"{r['bytes'] / 2**20:>9.1f}"
        )
    print(
        json.dumps(
            {
                "benchmark": "report",
                "rows": rows,
                "bulk_load_s": round(load_s, 2),
                "ledger_mib": round(size_mb, 1),
                "appends": appends,
                "reports": reports,
                "max_report_s": max(r["seconds"] for r in reports),
            }
        )
    )


if __name__ == "__main__":
    main()
