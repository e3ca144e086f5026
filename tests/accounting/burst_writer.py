"""A stand-in for the server's bind path: appends decisions in bursts, printing each ack.

Run as ``python burst_writer.py LEDGER MODE``; MODE ``decisions`` appends placement and
lifecycle records, ``usage`` appends accounted usage rows (for read-while-write tests). Each
acknowledged key is printed (and flushed) only after its append's future resolved, so the
parent knows exactly which records were acknowledged before it kills this process.
"""

from __future__ import annotations

import asyncio
import sys

from carbon.accounting.ledger import Ledger, LifecycleRecord, PlacementRecord, Record, UsageRecord

BURST = 64
NOW = 1_686_744_000.0  # 2023-06-14T12:00:00Z: records are dated from here, not the wall clock


def decision_records(i: int, now: float) -> list[Record]:
    uid = f"burst-{i:07d}"
    return [
        PlacementRecord(
            uid=uid,
            namespace="ml",
            name=f"p{i}",
            at=now - 3602,  # a pod that ran for an hour and just finished
            node=f"n{i % 5}",
            zone="DE",
            gpu_model="NVIDIA-A100",
            gpus=1,
            cpu_milli=8000,
            memory_bytes=32 * 2**30,
            intensity_g_per_kwh=300.0,
            counterfactual_kg=1.0,
            expected_kg=0.8,
        ),
        LifecycleRecord(uid=uid, event="start", at=now - 3601),
        LifecycleRecord(uid=uid, event="end", at=now - 1),
    ]


def usage_record(i: int, now: float) -> UsageRecord:
    return UsageRecord(
        uid=f"use-{i:07d}",
        namespace=f"ns{i % 4}",
        name=f"p{i}",
        workload_class="batch",
        job=f"ns{i % 4}/Job/j{i // 10}",
        node="n1",
        zone="FR",
        gpu_model="NVIDIA-L4",
        start=1.7e9 + i,
        end=1.7e9 + i + 3600,
        day="2023-11-14",
        gpu_hours=1.0,
        energy_kwh=0.1,
        co2e_location_kg=0.006,
        co2e_market_kg=0.006,
        market_basis="location",
        embodied_kg=0.004,
        counterfactual_kg=0.007,
        avoided_kg=0.001,
        estimated_kg=0.0,
        method="model",
        accounted_at=now,
    )


async def main(path: str, mode: str) -> None:
    ledger = Ledger(path)
    i = 0
    while True:
        now = NOW
        records: list[Record] = []
        for _ in range(BURST):
            if mode == "decisions":
                records.extend(decision_records(i, now))
            else:
                records.append(usage_record(i, now))
            i += 1
        pending = [(r.key, asyncio.ensure_future(ledger.append_async(r))) for r in records]
        for key, fut in pending:
            await fut
            sys.stdout.write(key + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
