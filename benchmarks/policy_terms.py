"""Cost of the policy's per-cycle work: class choice, the carbon (emissions) term, the constraints
filter, and validating a policy file (reload path, not per cycle).

Synthetic candidate tables (12 zones, 6 GPU models, every GPU free) scored for a 1-GPU pod under
the shipped ``policies/training.yaml`` (its training class has residency and an intensity
ceiling). Carbon data: the offline ``static`` snapshot ``lowcarb serve`` starts with.

Prints a table, then one JSON line last:
``{"benchmark": "policy_terms", "results": [{"what", "nodes", "p50_us", "p99_us"}, ...]}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from carbon.cache import CarbonCache
from scheduler import wire
from scheduler.cluster.table import NodeTable
from scheduler.demand import PodDemand
from scheduler.engine import Engine
from scheduler.policy.validate import load_policy, validate_text

ROOT = Path(__file__).resolve().parent.parent
POLICY = ROOT / "policies" / "training.yaml"
ZONES = [
    "SE-SE3",
    "FR",
    "DE",
    "PL",
    "NL",
    "IE",
    "GB",
    "US-CAL-CISO",
    "US-NW-BPAT",
    "SG",
    "JP-TK",
    "IN-WE",
]
REGIONS = ["eu-north-1", "eu-west-3", "eu-central-1", "europe-central2", "eu-west-4", "eu-west-1",
           "eu-west-2", "us-west-1", "us-west-2", "ap-southeast-1", "ap-northeast-1",
           "ap-south-1"]  # fmt: skip
MODELS = ["NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-80GB", "NVIDIA-L40S", "NVIDIA-L4", "Tesla-T4",
          "Tesla-V100-SXM2-32GB"]  # fmt: skip


def table(n: int, rng: np.random.Generator) -> NodeTable:
    zone = rng.integers(0, len(ZONES), n).astype(np.int32)
    return NodeTable(
        names=[f"node-{i}" for i in range(n)],
        zone=zone,
        zones=list(ZONES),
        region=[REGIONS[z] for z in zone.tolist()],
        gpu_model=rng.integers(0, len(MODELS), n).astype(np.int32),
        models=list(MODELS),
        gpu_total=np.full(n, 8, dtype=np.int32),
        gpu_free=np.full((n, 8), 1000, dtype=np.int32),
        gpu_mem_mib=np.full(n, 81920, dtype=np.int32),
        cpu_free=np.full(n, 96_000, dtype=np.int64),
        mem_free=np.full(n, 2**40, dtype=np.int64),
        mig_free=np.zeros((n, 0), dtype=np.int32),
        mig_profiles=[],
    )


def timed(fn: Callable[[], object], reps: int) -> tuple[float, float]:
    fn()
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e6)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(0.99 * len(samples)))]


def run(sizes: list[int], reps: int) -> list[dict[str, object]]:
    policy = load_policy(POLICY)
    engine = Engine(policy)
    view = CarbonCache(policy.carbon).view()
    pod = wire.Pod(
        metadata=wire.ObjectMeta(
            name="train-0",
            namespace="ml",
            uid="u-0",
            labels={"app": "train"},
            annotations={"lowcarb.dev/expected-duration": "6h"},
            ownerReferences=[wire.OwnerReference(kind="PyTorchJob", name="bert", controller=True)],
        )
    )
    demand = PodDemand(
        uid="u-0", namespace="ml", name="train-0", gpus=1, gpu_milli=1000, cpu_milli=8000
    )
    klass = engine.classify(pod)
    cls = policy.workload_class(klass)
    rows: list[dict[str, object]] = []
    rng = np.random.default_rng(7)
    p50, p99 = timed(lambda: engine.classify(pod), reps * 10)
    rows.append({"what": "classify (annotation, selectors, duration)", "nodes": 0,
                 "p50_us": p50, "p99_us": p99})  # fmt: skip
    for n in sizes:
        t = table(n, rng)
        ctx = engine.context(demand, t, view, 0.0, cls, klass=klass, duration_s=6 * 3600)
        ctx.feasible = np.ones(n, dtype=bool)
        carbon, constraints = engine.terms["carbon"], engine.terms["constraints"]
        calls: list[tuple[str, Callable[[], object]]] = [
            ("carbon term (expected gCO2e)", partial(carbon.score, ctx, cls)),
            ("constraints filter (residency, ceiling)", partial(constraints.filter, ctx, cls)),
            (
                "engine.evaluate (all terms, 0..10)",
                partial(engine.evaluate, demand, t, view, 0.0, klass=klass),
            ),
        ]
        for what, fn in calls:
            p50, p99 = timed(fn, reps)
            rows.append({"what": what, "nodes": n, "p50_us": p50, "p99_us": p99})
    text = POLICY.read_text()
    p50, p99 = timed(lambda: validate_text(text, str(POLICY)), max(5, reps // 5))
    rows.append({"what": "validate policies/training.yaml", "nodes": 0, "p50_us": p50,
                 "p99_us": p99})  # fmt: skip
    for row in rows:
        row["p50_us"] = round(float(str(row["p50_us"])), 1)
        row["p99_us"] = round(float(str(row["p99_us"])), 1)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,5000", help="candidate node counts")
    parser.add_argument("--reps", type=int, default=200, help="timed calls per row")
    args = parser.parse_args(argv)
    rows = run([int(s) for s in args.sizes.split(",")], args.reps)
    print(f"{'what':44} {'nodes':>6} {'p50 us':>10} {'p99 us':>10}")
    for r in rows:
        print(f"{r['what']!s:44} {r['nodes']!s:>6} {r['p50_us']!s:>10} {r['p99_us']!s:>10}")
    print(json.dumps({"benchmark": "policy_terms", "results": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
